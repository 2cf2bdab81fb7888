/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * bpnet wire contract: the shared memory between the host and an agent.
 *
 * Generated from firmware/contract by `cargo xtask gen-header`; do not edit.
 * All fields are little-endian. The host writes into agent RAM (the BAR) only with
 * posted writes and reads it only at set-up; the agent writes into host RAM (the
 * status block) only by DMA.
 */
#ifndef BPNET_CONTRACT_H
#define BPNET_CONTRACT_H

#include <linux/build_bug.h>
#include <linux/stddef.h>
#include <linux/types.h>

/* Identification */
#define BPNET_MAGIC				0x544e5042
#define BPNET_VERSION_MAJOR			1
#define BPNET_VERSION_MINOR			4
#define BPNET_LOG_RING_MAGIC			0x474c5042

/* The shared region (agent RAM behind the BAR): fixed offsets, then defaults */
#define BPNET_SHARED_LEN			0x100000
#define BPNET_HEADER_OFFSET			0x0
#define BPNET_DOORBELLS_OFFSET			0x40
#define BPNET_LOG_RING_OFFSET			0x10000
#define BPNET_LOG_RING_LEN			0x10010
#define BPNET_LOG_RING_HEADER_LEN		16
#define BPNET_COUNTERS_OFFSET			0x80
#define BPNET_AGENT_INFO_OFFSET			0x180
#define BPNET_TX_RING_OFFSET			0x30000
#define BPNET_RX_RING_OFFSET			0x40000
#define BPNET_BOOT_OFFSET			0x200
#define BPNET_BOARD_INFO_OFFSET			0x240
#define BPNET_RECOVERY_OFFSET			0x30000
#define BPNET_RECOVERY_LEN			0xd0000

/* Sizes and limits */
#define BPNET_HEADER_LEN			64
#define BPNET_DOORBELLS_LEN			64
#define BPNET_DESCRIPTOR_LEN			16
#define BPNET_COUNTERS_LEN			256
#define BPNET_AGENT_INFO_LEN			64
#define BPNET_BOARD_INFO_LEN			64
#define BPNET_BOARD_SLOTS			20
#define BPNET_BOARD_SLOT_UNKNOWN		0xff
#define BPNET_BOARD_SERIAL_MAX			0xffffff
#define BPNET_BOARD_MPC8349EMDS			1
#define BPNET_FAULT_VECTOR_MAX			0x2f00
#define BPNET_COUNTER_SLOTS			64
#define BPNET_BOOT_BLOCK_LEN			64
#define BPNET_STATUS_HEADER_LEN			32
#define BPNET_COMPLETION_LEN			8
#define BPNET_STATUS_BLOCK_ALIGN		64
#define BPNET_RING_ENTRIES_MIN			2
#define BPNET_RING_ENTRIES_MAX			4096
#define BPNET_MTU_MIN				68
#define BPNET_MTU_MAX				65535
#define BPNET_RX_BUFFER_MIN			4096
#define BPNET_RX_CHAIN_MAX			32
#define BPNET_MTU_DEFAULT			1500

/* The status block: the header, then `entries` TX and `entries` RX completions. */
#define BPNET_STATUS_TX_COMPLETIONS_OFFSET(entries)	BPNET_STATUS_HEADER_LEN
#define BPNET_STATUS_RX_COMPLETIONS_OFFSET(entries)	\
	(BPNET_STATUS_HEADER_LEN + (entries) * BPNET_COMPLETION_LEN)
#define BPNET_STATUS_BLOCK_LEN(entries)	\
	(BPNET_STATUS_HEADER_LEN + 2 * (entries) * BPNET_COMPLETION_LEN)

/* header.agent_state and header.host_state (bytes: write them alone) */
#define BPNET_AGENT_STATE_RESET			0
#define BPNET_AGENT_STATE_READY			1
#define BPNET_AGENT_STATE_RUNNING		2
#define BPNET_AGENT_STATE_BROKEN		3
#define BPNET_AGENT_STATE_RECOVERY		4
#define BPNET_HOST_STATE_DOWN			0
#define BPNET_HOST_STATE_UP			1

/* Feature bits: header.agent_features offered, header.host_features accepted */
#define BPNET_F_CSUM_OFFLOAD			0x1
#define BPNET_F_EVENT_INDEX			0x2
#define BPNET_F_MTU				0x4
#define BPNET_F_RX_MULTI_BUFFER			0x8
#define BPNET_F_ALL				0xf

/* descriptor.flags */
#define BPNET_DESC_F_NEEDS_CSUM			0x1
#define BPNET_DESC_F_ALL			0x1

/* completion.flags */
#define BPNET_COMPL_F_CSUM_VALID		0x1
#define BPNET_COMPL_F_NEEDS_CSUM		0x2
#define BPNET_COMPL_F_MORE			0x4
#define BPNET_COMPL_F_ERROR			0x8000
#define BPNET_COMPL_F_ALL			0x8007

/* status.interrupt_cause (a hint: the indexes decide) */
#define BPNET_CAUSE_RX				0x1
#define BPNET_CAUSE_TX				0x2
#define BPNET_CAUSE_LINK			0x4
#define BPNET_CAUSE_ERROR			0x8
#define BPNET_CAUSE_ALL				0xf

/* Message-unit doorbell bits: IDR rung by the host, ODR by the agent */
#define BPNET_NOTIFY_WORK			0x2
#define BPNET_NOTIFY_STATUS			0x2
#define BPNET_NOTIFY_LINK			0x4
#define BPNET_NOTIFY_CONTROL			0x8

/* The boot block: how the agent started, and the host's requests (recovery, reset) */
#define BPNET_BOOT_SOURCE_DIRECT		0
#define BPNET_BOOT_SOURCE_FLASH			1
#define BPNET_BOOT_SOURCE_NETBOOT		2
#define BPNET_BOOT_SOURCE_RECOVERY		3
#define BPNET_BOOT_SLOT_NONE			0xff
#define BPNET_SLOT_STATE_UNKNOWN		0xff
#define BPNET_SLOT_STATE_EMPTY			0
#define BPNET_SLOT_STATE_WRITTEN		1
#define BPNET_SLOT_STATE_CONFIRMED		2
#define BPNET_SLOT_STATE_REJECTED		3
#define BPNET_BOOT_F_TRIAL			0x1
#define BPNET_BOOT_F_CONFIRMED			0x2
#define BPNET_BOOT_STAGE_FIRMWARE		0
#define BPNET_BOOT_STAGE_CHOOSING		1
#define BPNET_BOOT_STAGE_RECOVERY_WAITING	2
#define BPNET_BOOT_STAGE_RECOVERY_VERIFYING	3
#define BPNET_BOOT_STAGE_RECOVERY_REFUSED	4
#define BPNET_BOOT_STAGE_STARTING		5
#define BPNET_HOST_REQUEST_NONE			0
#define BPNET_HOST_REQUEST_RESET		1
#define BPNET_HOST_REQUEST_ENTER_RECOVERY	2
#define BPNET_HOST_REQUEST_BOOT_IMAGE		3
#define BPNET_RECOVERY_ERROR_LENGTH		0x100

/* ivshmem-doorbell personality: BAR2 is the shared region */
#define BPNET_IVSHMEM_AGENT_PEER		0
#define BPNET_IVSHMEM_VECTOR_WORK		0
#define BPNET_IVSHMEM_VECTOR_STATUS		0
#define BPNET_IVSHMEM_VECTOR_LINK		1
#define BPNET_IVSHMEM_VECTOR_CONTROL		1
#define BPNET_IVSHMEM_VECTORS			2

/* Host bus addresses an agent of minor version 1 reaches: [0, this); later ones say (agent_info) */
#define BPNET_DMA_REACH_MINOR_1			0x10000000
#define BPNET_DMA_REACH_MIN			0x1000
#define BPNET_VERSION_MINOR_AGENT_INFO		2
#define BPNET_VERSION_MINOR_HEARTBEAT		3
#define BPNET_VERSION_MINOR_BOARD_INFO		4
#define BPNET_VERSION_MINOR_RX_MULTI_BUFFER	4

/* Counter slots in counters.slots[], u32 each, wrapping */
#define BPNET_COUNTER_TX_FRAMES			0
#define BPNET_COUNTER_TX_BYTES			1
#define BPNET_COUNTER_RX_FRAMES			2
#define BPNET_COUNTER_RX_BYTES			3
#define BPNET_COUNTER_TX_DMA_ERRORS		4
#define BPNET_COUNTER_RX_DMA_ERRORS		5
#define BPNET_COUNTER_BAD_DESCRIPTORS		6
#define BPNET_COUNTER_BAD_INDEXES		7
#define BPNET_COUNTER_RX_NO_BUFFER		8
#define BPNET_COUNTER_DOORBELLS			9
#define BPNET_COUNTER_INTERRUPTS		10
#define BPNET_COUNTER_HOST_RESETS_SEEN		11
#define BPNET_COUNTER_BAD_HOST_CONFIG		12
#define BPNET_COUNTER_RX_FRAMES_UNPARSED	13
#define BPNET_COUNTER_IP_FRAGMENTS_RECEIVED	14
#define BPNET_COUNTER_IP_FRAGMENTS_DROPPED	15
#define BPNET_COUNTER_IP_FRAGMENTS_SENT		16
#define BPNET_COUNTER_UDP_DROPPED		17
#define BPNET_COUNTER_HEADER_REPAIRS		24

/* Each counter's name by slot: an array initializer (ethtool -S strings). */
#define BPNET_COUNTER_NAMES {	\
	[BPNET_COUNTER_TX_FRAMES] = "tx_frames",	\
	[BPNET_COUNTER_TX_BYTES] = "tx_bytes",	\
	[BPNET_COUNTER_RX_FRAMES] = "rx_frames",	\
	[BPNET_COUNTER_RX_BYTES] = "rx_bytes",	\
	[BPNET_COUNTER_TX_DMA_ERRORS] = "tx_dma_errors",	\
	[BPNET_COUNTER_RX_DMA_ERRORS] = "rx_dma_errors",	\
	[BPNET_COUNTER_BAD_DESCRIPTORS] = "bad_descriptors",	\
	[BPNET_COUNTER_BAD_INDEXES] = "bad_indexes",	\
	[BPNET_COUNTER_RX_NO_BUFFER] = "rx_no_buffer",	\
	[BPNET_COUNTER_DOORBELLS] = "doorbells",	\
	[BPNET_COUNTER_INTERRUPTS] = "interrupts",	\
	[BPNET_COUNTER_HOST_RESETS_SEEN] = "host_resets_seen",	\
	[BPNET_COUNTER_BAD_HOST_CONFIG] = "bad_host_config",	\
	[BPNET_COUNTER_RX_FRAMES_UNPARSED] = "rx_frames_unparsed",	\
	[BPNET_COUNTER_IP_FRAGMENTS_RECEIVED] = "ip_fragments_received",	\
	[BPNET_COUNTER_IP_FRAGMENTS_DROPPED] = "ip_fragments_dropped",	\
	[BPNET_COUNTER_IP_FRAGMENTS_SENT] = "ip_fragments_sent",	\
	[BPNET_COUNTER_UDP_DROPPED] = "udp_dropped",	\
	[BPNET_COUNTER_HEADER_REPAIRS] = "header_repairs",	\
}

/*
 * Agent RAM at BPNET_HEADER_OFFSET. Agent fields up to agent_state, host fields
 * from host_state; the host reads it only at set-up and writes only its own
 * fields, byte-sized ones as bytes.
 */
struct bpnet_header {
	__le32 magic;			/* 0x00 */
	__le16 version_major;		/* 0x04 */
	__le16 version_minor;		/* 0x06 */
	__le32 agent_features;		/* 0x08 */
	__le32 agent_generation;	/* 0x0c */
	__le32 firmware_version;	/* 0x10 */
	__le32 tx_ring_offset;		/* 0x14 */
	__le32 rx_ring_offset;		/* 0x18 */
	__le32 log_ring_offset;		/* 0x1c */
	__le32 counters_offset;		/* 0x20 */
	__u8 mac[6];			/* 0x24 */
	__le16 ring_entries;		/* 0x2a */
	__u8 agent_state;		/* 0x2c */
	__u8 host_state;		/* 0x2d */
	__le16 mtu;			/* 0x2e */
	__le64 status_block_addr;	/* 0x30 */
	__le32 host_features;		/* 0x38 */
	__le32 host_generation;		/* 0x3c */
};

static_assert(sizeof(struct bpnet_header) == 64);
static_assert(offsetof(struct bpnet_header, magic) == 0x00);
static_assert(offsetof(struct bpnet_header, version_major) == 0x04);
static_assert(offsetof(struct bpnet_header, version_minor) == 0x06);
static_assert(offsetof(struct bpnet_header, agent_features) == 0x08);
static_assert(offsetof(struct bpnet_header, agent_generation) == 0x0c);
static_assert(offsetof(struct bpnet_header, firmware_version) == 0x10);
static_assert(offsetof(struct bpnet_header, tx_ring_offset) == 0x14);
static_assert(offsetof(struct bpnet_header, rx_ring_offset) == 0x18);
static_assert(offsetof(struct bpnet_header, log_ring_offset) == 0x1c);
static_assert(offsetof(struct bpnet_header, counters_offset) == 0x20);
static_assert(offsetof(struct bpnet_header, mac) == 0x24);
static_assert(offsetof(struct bpnet_header, ring_entries) == 0x2a);
static_assert(offsetof(struct bpnet_header, agent_state) == 0x2c);
static_assert(offsetof(struct bpnet_header, host_state) == 0x2d);
static_assert(offsetof(struct bpnet_header, mtu) == 0x2e);
static_assert(offsetof(struct bpnet_header, status_block_addr) == 0x30);
static_assert(offsetof(struct bpnet_header, host_features) == 0x38);
static_assert(offsetof(struct bpnet_header, host_generation) == 0x3c);

/*
 * Agent RAM at BPNET_DOORBELLS_OFFSET. Host-written with posted writes, never
 * read by the host.
 */
struct bpnet_doorbells {
	__le32 tx_prod;			/* 0x00 */
	__le32 rx_prod;			/* 0x04 */
	__le32 rx_used_event;		/* 0x08 */
	__le32 tx_used_event;		/* 0x0c */
	__u8 reserved[48];		/* 0x10 */
};

static_assert(sizeof(struct bpnet_doorbells) == 64);
static_assert(offsetof(struct bpnet_doorbells, tx_prod) == 0x00);
static_assert(offsetof(struct bpnet_doorbells, rx_prod) == 0x04);
static_assert(offsetof(struct bpnet_doorbells, rx_used_event) == 0x08);
static_assert(offsetof(struct bpnet_doorbells, tx_used_event) == 0x0c);
static_assert(offsetof(struct bpnet_doorbells, reserved) == 0x10);

/*
 * Agent RAM, TX and RX rings. Host-written: a frame to send (TX) or an empty
 * buffer (RX).
 */
struct bpnet_descriptor {
	__le64 addr;			/* 0x00 */
	__le32 len;			/* 0x08 */
	__le16 id;			/* 0x0c */
	__le16 flags;			/* 0x0e */
};

static_assert(sizeof(struct bpnet_descriptor) == 16);
static_assert(offsetof(struct bpnet_descriptor, addr) == 0x00);
static_assert(offsetof(struct bpnet_descriptor, len) == 0x08);
static_assert(offsetof(struct bpnet_descriptor, id) == 0x0c);
static_assert(offsetof(struct bpnet_descriptor, flags) == 0x0e);

/*
 * Agent RAM at BPNET_AGENT_INFO_OFFSET, from contract minor version 2.
 * Agent-written before READY, read by the host at set-up with the header.
 * dma_reach: the agent's DMA reaches host bus addresses [0, dma_reach).
 * heartbeat (minor 3): advanced by the agent's timer about once a second while
 * RUNNING, never 0 once started; 0 means no heartbeat yet. The host reads it on
 * its slow path.
 */
struct bpnet_agent_info {
	__le64 dma_reach;		/* 0x00 */
	__u8 reserved[52];		/* 0x08 */
	__le32 heartbeat;		/* 0x3c */
};

static_assert(sizeof(struct bpnet_agent_info) == 64);
static_assert(offsetof(struct bpnet_agent_info, dma_reach) == 0x00);
static_assert(offsetof(struct bpnet_agent_info, reserved) == 0x08);
static_assert(offsetof(struct bpnet_agent_info, heartbeat) == 0x3c);

/*
 * Agent RAM at BPNET_BOARD_INFO_OFFSET, from contract minor version 4.
 * Agent-written. serial (0: no identity record), slot (0..19, 0xff unknown),
 * board (BPNET_BOARD_*), spridr and pvr: written by the firmware at start.
 * boot_stage_version: by the boot stage (0: not started by it). The fault
 * record (fault_*): by the firmware's exception handler before it waits for the
 * host's reset, fault_seq last (0: no fault since power-on); nothing else
 * writes it, so it outlives the reset.
 */
struct bpnet_board_info {
	__le32 serial;			/* 0x00 */
	__u8 slot;			/* 0x04 */
	__u8 board;			/* 0x05 */
	__le16 reserved;		/* 0x06 */
	__le32 spridr;			/* 0x08 */
	__le32 pvr;			/* 0x0c */
	__le32 boot_stage_version;	/* 0x10 */
	__u8 reserved2[12];		/* 0x14 */
	__le32 fault_seq;		/* 0x20 */
	__le32 fault_vector;		/* 0x24 */
	__le32 fault_srr0;		/* 0x28 */
	__le32 fault_srr1;		/* 0x2c */
	__le32 fault_dar;		/* 0x30 */
	__le32 fault_dsisr;		/* 0x34 */
	__le32 fault_generation;	/* 0x38 */
	__le32 fault_uptime_s;		/* 0x3c */
};

static_assert(sizeof(struct bpnet_board_info) == 64);
static_assert(offsetof(struct bpnet_board_info, serial) == 0x00);
static_assert(offsetof(struct bpnet_board_info, slot) == 0x04);
static_assert(offsetof(struct bpnet_board_info, board) == 0x05);
static_assert(offsetof(struct bpnet_board_info, reserved) == 0x06);
static_assert(offsetof(struct bpnet_board_info, spridr) == 0x08);
static_assert(offsetof(struct bpnet_board_info, pvr) == 0x0c);
static_assert(offsetof(struct bpnet_board_info, boot_stage_version) == 0x10);
static_assert(offsetof(struct bpnet_board_info, reserved2) == 0x14);
static_assert(offsetof(struct bpnet_board_info, fault_seq) == 0x20);
static_assert(offsetof(struct bpnet_board_info, fault_vector) == 0x24);
static_assert(offsetof(struct bpnet_board_info, fault_srr0) == 0x28);
static_assert(offsetof(struct bpnet_board_info, fault_srr1) == 0x2c);
static_assert(offsetof(struct bpnet_board_info, fault_dar) == 0x30);
static_assert(offsetof(struct bpnet_board_info, fault_dsisr) == 0x34);
static_assert(offsetof(struct bpnet_board_info, fault_generation) == 0x38);
static_assert(offsetof(struct bpnet_board_info, fault_uptime_s) == 0x3c);

/*
 * Agent RAM at counters_offset. Agent-written, read by the host on slow paths;
 * each slot wraps.
 */
struct bpnet_counters {
	__le32 slots[64];		/* 0x00 */
};

static_assert(sizeof(struct bpnet_counters) == 256);
static_assert(offsetof(struct bpnet_counters, slots) == 0x00);

/*
 * Agent RAM at BPNET_BOOT_OFFSET. Agent fields up to reserved, host fields from
 * host_request; the host writes recovery_len, host_request, then request_seq,
 * then rings BPNET_NOTIFY_CONTROL.
 */
struct bpnet_boot_block {
	__u8 boot_source;		/* 0x00 */
	__u8 boot_slot;			/* 0x01 */
	__u8 boot_flags;		/* 0x02 */
	__u8 stage;			/* 0x03 */
	__le32 uptime_s;		/* 0x04 */
	__le32 image_version;		/* 0x08 */
	__le32 recovery_offset;		/* 0x0c */
	__le32 recovery_capacity;	/* 0x10 */
	__le32 recovery_error;		/* 0x14 */
	__le32 slot_a_version;		/* 0x18 */
	__le32 slot_b_version;		/* 0x1c */
	__u8 slot_a_state;		/* 0x20 */
	__u8 slot_b_state;		/* 0x21 */
	__u8 reserved[14];		/* 0x22 */
	__le32 host_request;		/* 0x30 */
	__le32 recovery_len;		/* 0x34 */
	__le32 request_seq;		/* 0x38 */
	__le32 host_reserved;		/* 0x3c */
};

static_assert(sizeof(struct bpnet_boot_block) == 64);
static_assert(offsetof(struct bpnet_boot_block, boot_source) == 0x00);
static_assert(offsetof(struct bpnet_boot_block, boot_slot) == 0x01);
static_assert(offsetof(struct bpnet_boot_block, boot_flags) == 0x02);
static_assert(offsetof(struct bpnet_boot_block, stage) == 0x03);
static_assert(offsetof(struct bpnet_boot_block, uptime_s) == 0x04);
static_assert(offsetof(struct bpnet_boot_block, image_version) == 0x08);
static_assert(offsetof(struct bpnet_boot_block, recovery_offset) == 0x0c);
static_assert(offsetof(struct bpnet_boot_block, recovery_capacity) == 0x10);
static_assert(offsetof(struct bpnet_boot_block, recovery_error) == 0x14);
static_assert(offsetof(struct bpnet_boot_block, slot_a_version) == 0x18);
static_assert(offsetof(struct bpnet_boot_block, slot_b_version) == 0x1c);
static_assert(offsetof(struct bpnet_boot_block, slot_a_state) == 0x20);
static_assert(offsetof(struct bpnet_boot_block, slot_b_state) == 0x21);
static_assert(offsetof(struct bpnet_boot_block, reserved) == 0x22);
static_assert(offsetof(struct bpnet_boot_block, host_request) == 0x30);
static_assert(offsetof(struct bpnet_boot_block, recovery_len) == 0x34);
static_assert(offsetof(struct bpnet_boot_block, request_seq) == 0x38);
static_assert(offsetof(struct bpnet_boot_block, host_reserved) == 0x3c);

/*
 * Host RAM at status_block_addr, followed by ring_entries TX then ring_entries
 * RX completions. Written only by the agent's DMA.
 */
struct bpnet_status {
	__le32 tx_used;			/* 0x00 */
	__le32 rx_used;			/* 0x04 */
	__le32 tx_prod_event;		/* 0x08 */
	__le32 rx_prod_event;		/* 0x0c */
	__le32 interrupt_cause;		/* 0x10 */
	__le32 agent_generation;	/* 0x14 */
	__u8 reserved[8];		/* 0x18 */
};

static_assert(sizeof(struct bpnet_status) == 32);
static_assert(offsetof(struct bpnet_status, tx_used) == 0x00);
static_assert(offsetof(struct bpnet_status, rx_used) == 0x04);
static_assert(offsetof(struct bpnet_status, tx_prod_event) == 0x08);
static_assert(offsetof(struct bpnet_status, rx_prod_event) == 0x0c);
static_assert(offsetof(struct bpnet_status, interrupt_cause) == 0x10);
static_assert(offsetof(struct bpnet_status, agent_generation) == 0x14);
static_assert(offsetof(struct bpnet_status, reserved) == 0x18);

/*
 * Host RAM, in the status block. One per TX descriptor sent or RX buffer
 * filled.
 */
struct bpnet_completion {
	__le16 id;			/* 0x00 */
	__le16 flags;			/* 0x02 */
	__le32 len;			/* 0x04 */
};

static_assert(sizeof(struct bpnet_completion) == 8);
static_assert(offsetof(struct bpnet_completion, id) == 0x00);
static_assert(offsetof(struct bpnet_completion, flags) == 0x02);
static_assert(offsetof(struct bpnet_completion, len) == 0x04);

#endif /* BPNET_CONTRACT_H */
