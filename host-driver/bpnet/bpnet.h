/* SPDX-License-Identifier: GPL-2.0 */
/*
 * bpnet: Ethernet over a PCI backplane, host side.
 *
 * One PCI function per agent, one net_device per agent. The bus personalities
 * (ivshmem, mpc834x) map the shared region, ring the agent and take its
 * interrupts; everything else is shared. Logic and names follow the host model
 * in tests/support/src/host.rs.
 */
#ifndef BPNET_H
#define BPNET_H

#include <linux/atomic.h>
#include <linux/interrupt.h>
#include <linux/mutex.h>
#include <linux/netdevice.h>
#include <linux/pci.h>
#include <linux/spinlock.h>
#include <linux/u64_stats_sync.h>
#include <linux/workqueue.h>
#include <net/devlink.h>

#include "bpnet_contract.h"

#define BPNET_DRV_NAME "bpnet"

/*
 * RX buffers kept posted: the whole ring, or fewer when a ring of them would
 * pin more than BPNET_RX_POSTED_BYTES, but never fewer than BPNET_RX_POSTED_MIN.
 * A buffer counts as what its allocation really takes (bpnet_rx_alloc_bytes).
 * With RX_MULTI_BUFFER every buffer is one order-0 page (a frame spans as many
 * as it needs), so the whole ring of 256 is posted at any MTU: 1 MiB per
 * agent. Without it (an older agent) each buffer holds a whole frame: 2 KiB at
 * MTU 1500, 16 KiB at 9000 (the whole ring either way) and 128 KiB at 65535,
 * so 32 buffers there, where a full ring would pin 32 MiB per agent.
 */
#define BPNET_RX_POSTED_BYTES	(4U << 20)
#define BPNET_RX_POSTED_MIN	16U

/*
 * With RX_MULTI_BUFFER: bytes of a frame copied into the skb's linear part
 * when the whole frame fits (the page is freed), else at most this much of
 * its headers (eth_get_headlen), the rest left in the pages as fragments.
 */
#define BPNET_RX_COPY_LEN	256U

/* Offsets of the contract's fields in the shared region. */
#define BPNET_HEADER(field) \
	(BPNET_HEADER_OFFSET + offsetof(struct bpnet_header, field))
#define BPNET_DOORBELL(field) \
	(BPNET_DOORBELLS_OFFSET + offsetof(struct bpnet_doorbells, field))
#define BPNET_BOOT(field) \
	(BPNET_BOOT_OFFSET + offsetof(struct bpnet_boot_block, field))
#define BPNET_AGENT_INFO(field) \
	(BPNET_AGENT_INFO_OFFSET + offsetof(struct bpnet_agent_info, field))
#define BPNET_BOARD_INFO(field) \
	(BPNET_BOARD_INFO_OFFSET + offsetof(struct bpnet_board_info, field))

struct bpnet;

/* Counters kept by the module, shown by ethtool -S after the agent's. */
enum bpnet_host_stat {
	/* Every read across the bus (BAR and message-unit registers). */
	BPNET_STAT_host_bar_reads,
	/* Of those, the reads off the fast path: set-up, link checks, counters. */
	BPNET_STAT_host_bar_reads_slow_path,
	/* Every posted write across the bus, doorbells included. */
	BPNET_STAT_host_bar_writes,
	BPNET_STAT_interrupts,
	BPNET_STAT_doorbells,
	BPNET_STAT_tx_frames,
	BPNET_STAT_tx_bytes,
	/* Frames the agent completed with the ERROR flag. */
	BPNET_STAT_tx_errors,
	/* Frames dropped before or instead of reaching the agent. */
	BPNET_STAT_tx_dropped,
	BPNET_STAT_rx_frames,
	BPNET_STAT_rx_bytes,
	/* Completions with the ERROR flag, and runts. */
	BPNET_STAT_rx_errors,
	/* Received frames dropped by the host (a checksum it could not complete). */
	BPNET_STAT_rx_dropped,
	/*
	 * RX_MULTI_BUFFER chains dropped: more than BPNET_RX_CHAIN_MAX buffers
	 * or skb fragments, a length above its buffer, a frame above the MTU
	 * plus the Ethernet header, or one broken off by an ERROR completion.
	 */
	BPNET_STAT_rx_bad_chains,
	/* Values the agent wrote that the contract refuses. */
	BPNET_STAT_contract_errors,
	BPNET_STAT_link_resets,
	/* RX buffers that could not be allocated or mapped (not frames). */
	BPNET_STAT_rx_alloc_failed,
	/*
	 * WORK rung again by the slow path: work was outstanding and the
	 * agent had moved nothing for a whole tick (a lost doorbell or a
	 * stale event index).
	 */
	BPNET_STAT_doorbells_resent,
	/* ndo_tx_timeout: the TX queue stayed stopped past the watchdog. */
	BPNET_STAT_tx_timeouts,
	/* The agent's heartbeat stopped while the link was up (carrier taken down). */
	BPNET_STAT_heartbeat_lost,
	/* Resets asked of an agent whose header the host could not use. */
	BPNET_STAT_reset_requests,
	BPNET_HOST_STATS
};

/* What one bus personality provides. */
struct bpnet_bus_ops {
	const char *name;
	/* Map BARs (bp->shared, bp->regs) and request interrupts. */
	int (*start)(struct bpnet *bp);
	/* Free the interrupts; mappings are managed. */
	void (*stop)(struct bpnet *bp);
	/* Ring the agent's WORK doorbell (one posted write). */
	void (*notify)(struct bpnet *bp);
	/* Ring the agent's CONTROL doorbell: a request is in the boot block. */
	void (*control)(struct bpnet *bp);
	/*
	 * Optional: stop (true) or restart (false) the agent's interrupts
	 * after a storm; from any context. Only at the agent's own source
	 * (its vectors, its mask register), never a line others may share.
	 */
	void (*mask)(struct bpnet *bp, bool masked);
	/*
	 * Optional, slow path under link_lock, before the link is looked at:
	 * notice that a hard reset of the agent took its PCI configuration
	 * and restore it.
	 */
	void (*restore)(struct bpnet *bp);
};

extern const struct bpnet_bus_ops bpnet_ivshmem_ops;
extern const struct bpnet_bus_ops bpnet_mpc834x_ops;

/* Where the link is. */
enum bpnet_link_state {
	/* Nothing allocated; host_state is DOWN (or was never written). */
	BPNET_LINK_IDLE,
	/* Host fields written, host_state UP, rings live, NAPI enabled. */
	BPNET_LINK_UP,
	/*
	 * host_state DOWN written, NAPI disabled; buffers and status block
	 * kept until the agent shows READY or RESET (no DMA of this
	 * connection can follow).
	 */
	BPNET_LINK_STOPPING,
};

/* The IRQ names a personality can use. */
enum bpnet_irq_name {
	/* One line for everything (mpc834x INTx). */
	BPNET_IRQ_ALL,
	BPNET_IRQ_STATUS,
	BPNET_IRQ_LINK,
	BPNET_IRQ_NAMES
};

struct bpnet_tx_slot {
	struct sk_buff *skb;
	dma_addr_t addr;
	u32 len;
};

/* A posted RX buffer: an skb (a whole frame), or a page (RX_MULTI_BUFFER). */
struct bpnet_rx_slot {
	struct sk_buff *skb;
	struct page *page;
	dma_addr_t addr;
};

/* The agent's half of the header, checked (AgentRepr in the contract). */
struct bpnet_agent {
	u32 features;
	u32 generation;
	u32 firmware_version;
	u32 tx_ring;
	u32 rx_ring;
	u32 log_ring;
	u32 counters;
	u8 mac[ETH_ALEN];
	u32 ring_entries;
	/* The contract's minor version: the agent info block's fields it has. */
	u16 version_minor;
	/* Host bus addresses the agent's DMA reaches: [0, dma_reach). */
	u64 dma_reach;
};

/* What recovers an agent from a health report. */
enum bpnet_recovery {
	/* The slow path's re-initialisation of the link, already under way. */
	BPNET_RECOVER_LINK,
	/* Only a reset of the agent (a fault, no progress). */
	BPNET_RECOVER_RESET,
};

/* The board info block's identity (BoardRepr in the contract), checked. */
struct bpnet_board {
	u32 serial;
	u8 slot;
	u8 board;
	u32 spridr;
	u32 pvr;
	u32 boot_stage_version;
};

/* The agent's last fault record, as read once per fault_seq (FaultRepr). */
struct bpnet_fault {
	u32 seq;
	u32 vector;
	u32 srr0;
	u32 srr1;
	u32 dar;
	u32 dsisr;
	u32 generation;
	u32 uptime_s;
};

/*
 * The status block's header words a storm check compares: indexes, events,
 * cause and generation (the reserved tail is not the agent's to move).
 */
#define BPNET_STORM_STATUS_WORDS \
	(offsetof(struct bpnet_status, reserved) / sizeof(__le32))

/* A run of interrupts that found nothing new: when it began, its last one. */
struct bpnet_storm_run {
	unsigned long start;
	unsigned long last;
	u32 count;
};

struct bpnet {
	struct net_device *netdev;
	struct pci_dev *pdev;
	const struct bpnet_bus_ops *ops;

	/* The shared region (agent RAM behind the BAR), BPNET_SHARED_LEN bytes. */
	void __iomem *shared;
	/* Personality registers: ivshmem BAR0, or IMMR for mpc834x. */
	void __iomem *regs;
	/*
	 * mpc834x: the function's INTx is off at its command register until
	 * the slow path restores its configuration after a hard reset.
	 */
	bool intx_silenced;

	struct napi_struct napi;

	/*
	 * Serialises set-up, reset and tear-down. Never held across a sleep
	 * that waits for the agent: ndo_stop, MTU changes and ethtool take it
	 * under rtnl.
	 */
	struct mutex link_lock;
	enum bpnet_link_state state;
	/* The interface is up: keep (re)connecting. */
	bool want_up;
	/* The agent's header passed its checks at least once (ethtool). */
	bool agent_valid;
	/* The agent shows RECOVERY (said once in the log, carrier off). */
	bool recovery;
	/* A refusal that only a new MTU can lift. */
	bool mtu_refused;
	/* Slow-path ticks spent waiting for RUNNING after UP. */
	unsigned int ticks_waiting;
	/* STOPPING: when the agent must have stopped (jiffies). */
	unsigned long stop_deadline;
	/* The stop wait timed out and was logged (once per episode). */
	bool stop_late;
	/* Set-ups refused in a row: the retry interval backs off with them. */
	unsigned int up_failures;
	/* The first refusal of a run of failed set-ups was logged. */
	bool up_failure_logged;
	/*
	 * The last kind of header refusal logged (its format): each distinct
	 * fault is said once per episode, the rest counted.
	 */
	const char *fault_logged;
	/* Why the last set-up was refused, for the reset request's log line. */
	char fault[96];
	/* Resets asked in this episode; past BPNET_RESET_REQUESTS_MAX the host gives up. */
	unsigned int reset_requests;
	unsigned long reset_asked_at;
	bool reset_gave_up;
	/*
	 * Heartbeat (slow path, link up and running): the beat last read,
	 * when it or the status block last moved (jiffies), whether one is
	 * known (minor version 3 and a non-zero beat seen) and whether both
	 * stopped (carrier off).
	 * sysfs (bpnet_heartbeat) reads them without link_lock.
	 */
	u32 heartbeat;
	/* tx_used + rx_used at the last look: completions are a sign of life. */
	u32 heartbeat_used;
	unsigned long heartbeat_moved;
	bool heartbeat_known;
	bool unresponsive;
	/*
	 * The status block's indexes at the last slow-path tick: work
	 * outstanding while none of them moves means a missed doorbell.
	 */
	u32 tick_tx_used;
	u32 tick_rx_used;
	u32 tick_tx_event;
	u32 tick_rx_event;
	bool tick_valid;
	/* WORK was rung again for this unmoving status; not again until it moves. */
	bool tick_rung;
	/* Watchdog timeouts without a TX completion in between (TX lock). */
	unsigned int tx_timeout_run;
	/* The TX queue stayed stopped through two timeouts: reset the link. */
	bool tx_stalled;
	/* Checksum offload negotiated (ndo_fix_features reads it). */
	bool csum_offload;
	/* csum_offload changed: netdev_update_features is owed (under rtnl). */
	bool features_stale;
	struct delayed_work slow_work;
	/* RX refill in process context when NAPI could not allocate. */
	struct work_struct refill_work;
	/*
	 * IRQ names after the device, for /proc/interrupts: bpnet-<pci address>
	 * with -status or -link where the agent has a vector for each.
	 */
	char irq_names[BPNET_IRQ_NAMES][32];

	/* The dma_reach the DMA mask was last set from (0: the probe's default). */
	u64 dma_mask_reach;
	/* Fixed while the link is up. */
	struct bpnet_agent agent;
	u32 features;
	u32 host_generation;
	u32 entries;
	u32 buffer_len;
	/* RX buffers kept posted (BPNET_RX_POSTED_BYTES). */
	u32 rx_posted_max;
	/* RX_MULTI_BUFFER negotiated: RX buffers are pages, frames chains of them. */
	bool rx_multi;
	/* Bytes of each posted RX buffer: buffer_len, or PAGE_SIZE with rx_multi. */
	u32 rx_buf_len;
	struct bpnet_status *status;
	dma_addr_t status_addr;
	size_t status_len;
	struct bpnet_tx_slot *tx_slots;
	struct bpnet_rx_slot *rx_slots;

	/* TX: ndo_start_xmit and the TX reaping (under the TX queue lock). */
	u32 tx_prod;
	/* The tx_prod last written to the doorbells (xmit_more defers it). */
	u32 tx_prod_published;
	u32 tx_seen;

	/* RX and events: NAPI only. */
	u32 rx_prod;
	u32 rx_seen;
	/*
	 * RX_MULTI_BUFFER: the frame being assembled from its chain (NULL
	 * between frames), its buffers so far and the checksum flags of its
	 * first completion; rx_discard swallows the rest of a dropped chain.
	 */
	struct sk_buff *rx_skb;
	u32 rx_chain;
	u16 rx_chain_flags;
	bool rx_discard;
	/* The agent has answered UP through the status block. */
	bool running;
	/* A contract violation was seen (or an interrupt storm); the link is being reset. */
	bool broken;
	/* Interrupts wanted at the next completion (NAPI idle) or none. */
	bool interrupts;
	bool published_valid;
	u32 published_rx;
	u32 published_tx;

	/* Per-CPU: counting must not bounce a cache line per BAR access. */
	struct bpnet_pcpu_stats __percpu *pcpu_stats;
	/*
	 * Interrupt storm detection, in the handlers (bpnet_interrupt_storm):
	 * what the last STATUS interrupt found in the status block and the last
	 * LINK interrupt in the header, the runs of interrupts since that found
	 * nothing new, and whether a storm stopped the agent's interrupts until
	 * the next set-up. storm_lock also orders the handlers' look at the
	 * status block before its release (bpnet_reclaim).
	 */
	spinlock_t storm_lock;
	u32 storm_status_seen[BPNET_STORM_STATUS_WORDS];
	u32 storm_state_seen;
	struct bpnet_storm_run storm_status;
	struct bpnet_storm_run storm_link;
	bool storm_tripped;
	bool storm_masked;

	/* devlink (bpnet_devlink.c): the instance, the netdev's port, the reporter. */
	struct devlink *devlink;
	struct devlink_port dl_port;
	struct devlink_health_reporter *reporter;
	/*
	 * Reports only while the instance is registered (devlink warns
	 * otherwise): health_live under health_lock, which a report holds.
	 */
	struct mutex health_lock;
	bool health_live;
	/*
	 * The port is registered once the link first came up (the firmware
	 * has published its slot by then), from the slow path under
	 * health_lock; ndo_get_devlink_port shows it only then.
	 */
	bool dl_port_registered;
	/*
	 * The last fault record read (seq 0: none since the module loaded),
	 * kept for diagnose and the dump; fault_seq is read once a slow-path
	 * tick while the interface is up (one BAR read).
	 */
	struct bpnet_fault fault_rec;
	/* The last fault_seq read, accepted or not. */
	u32 fault_seen;
	/* A refused fault record or identity was said (once per device). */
	bool bogus_logged;
	/* A report the slow path owes the health reporter (slow path only). */
	bool health_pending;
	enum bpnet_recovery health_recovery;
	char health_msg[96];
	/* Ticks without progress, TX pending (at BPNET_STALL_TICKS: reported once). */
	unsigned int stalled_ticks;
};

struct bpnet_pcpu_stats {
	u64_stats_t v[BPNET_HOST_STATS];
	struct u64_stats_sync syncp;
};

/*
 * Count on this CPU: from hard IRQ, NAPI and process context alike, so the
 * 32-bit sequence update runs with interrupts off (a no-op on 64-bit).
 */
static inline void bpnet_count(struct bpnet *bp, enum bpnet_host_stat stat, u64 n)
{
	struct bpnet_pcpu_stats *s = get_cpu_ptr(bp->pcpu_stats);
	unsigned long flags = u64_stats_update_begin_irqsave(&s->syncp);

	u64_stats_add(&s->v[stat], n);
	u64_stats_update_end_irqrestore(&s->syncp, flags);
	put_cpu_ptr(bp->pcpu_stats);
}

u64 bpnet_stat(struct bpnet *bp, enum bpnet_host_stat stat);

/*
 * The only accessors of device memory: every read and posted write across
 * the bus is counted here.
 */
static inline u32 bpnet_read32(struct bpnet *bp, void __iomem *addr)
{
	bpnet_count(bp, BPNET_STAT_host_bar_reads, 1);
	return ioread32(addr);
}

static inline void bpnet_write(struct bpnet *bp, void __iomem *addr, u32 value,
			       unsigned int width)
{
	bpnet_count(bp, BPNET_STAT_host_bar_writes, 1);
	if (width == 1)
		iowrite8(value, addr);
	else if (width == 2)
		iowrite16(value, addr);
	else
		iowrite32(value, addr);
}

/* A read off the fast path (set-up, link checks, counters), counted twice. */
static inline u32 bpnet_slow_read32(struct bpnet *bp, u32 offset)
{
	bpnet_count(bp, BPNET_STAT_host_bar_reads_slow_path, 1);
	return bpnet_read32(bp, bp->shared + offset);
}

/*
 * Whether the agent's DMA reaches len bytes at addr (its outbound windows).
 * The DMA mask keeps mappings below the reach; this catches a platform whose
 * DMA API hands out an address above the mask anyway.
 */
static inline bool bpnet_in_reach(const struct bpnet *bp, dma_addr_t addr, u32 len)
{
	return (u64)addr < bp->agent.dma_reach && len <= bp->agent.dma_reach - (u64)addr;
}

/* Interrupt entry points for the personalities. */
bool bpnet_interrupt_storm(struct bpnet *bp, bool link);
void bpnet_status_event(struct bpnet *bp);
void bpnet_link_event(struct bpnet *bp);

/* The data path (bpnet_netdev.c), for the link's set-up and slow path. */
void bpnet_notify(struct bpnet *bp);
bool bpnet_fill_rx(struct bpnet *bp, gfp_t gfp, bool notify);
bool bpnet_status_pending(struct bpnet *bp);
void bpnet_refill_work(struct work_struct *work);

/* The link (bpnet_link.c): handshake, slow path, violations, storms. */
void bpnet_link_init(struct bpnet *bp);
int bpnet_link_probe(struct bpnet *bp);
void bpnet_link_open(struct bpnet *bp);
void bpnet_link_sync_features(struct bpnet *bp);
void bpnet_link_close(struct bpnet *bp);
int bpnet_link_change_mtu(struct bpnet *bp, int new_mtu);
void bpnet_link_free(struct bpnet *bp);
void bpnet_link_tx_timeout(struct bpnet *bp);
void bpnet_link_shutdown(struct bpnet *bp);
void bpnet_storm_reset(struct bpnet *bp);
u8 bpnet_read_header_byte(struct bpnet *bp, u32 offset);
__printf(2, 3) void bpnet_refuse(struct bpnet *bp, const char *fmt, ...);
__printf(2, 3) void bpnet_broken(struct bpnet *bp, const char *fmt, ...);

/* A request through the boot block's host fields, then CONTROL; returns its request_seq. */
u32 bpnet_send_request(struct bpnet *bp, u32 request, u32 recovery_len);

/* devlink (bpnet_devlink.c). */
int bpnet_read_board(struct bpnet *bp, struct bpnet_board *board);
int bpnet_devlink_probe(struct bpnet *bp);
void bpnet_devlink_register(struct bpnet *bp);
void bpnet_devlink_port(struct bpnet *bp);
void bpnet_devlink_unregister(struct bpnet *bp);
void bpnet_devlink_free(struct bpnet *bp);
__printf(3, 4)
void bpnet_health_note(struct bpnet *bp, enum bpnet_recovery recovery, const char *fmt, ...);
void bpnet_health_flush(struct bpnet *bp);

/* The PCI device's files (bpnet_sysfs.c). */
extern const struct attribute_group *bpnet_groups[];

extern const struct ethtool_ops bpnet_ethtool_ops;

#endif /* BPNET_H */
