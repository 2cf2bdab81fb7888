// SPDX-License-Identifier: GPL-2.0
/*
 * bpnet: the link with one agent, as ntb_transport owns its handshake.
 *
 * Set-up reads the agent's header through the BAR, checks it, writes the
 * host's fields and host_state UP last. The slow path (a delayed work, every
 * second and at once on a LINK interrupt or a violation the data path saw)
 * looks at the agent's state and generation and re-initialises the link
 * without a reload when the agent resets, breaks, leaves RUNNING or enters
 * recovery. While the link is up it also reads the agent's heartbeat: one that
 * stops for heartbeat_timeout_ms takes the carrier down until it beats
 * again. A header it cannot use has the agent asked to reset through the boot
 * block, once per back-off period, BPNET_RESET_REQUESTS_MAX times at most.
 * Tear-down writes host_state DOWN and gives the buffers back only
 * once the agent shows no DMA can follow. Interrupt storms are caught here
 * and break the link like any other violation. The netdev (bpnet_netdev.c)
 * only asks for the link up or down.
 */

#include <linux/delay.h>
#include <linux/dma-mapping.h>
#include <linux/io.h>
#include <linux/log2.h>
#include <linux/module.h>
#include <linux/rtnetlink.h>

#include "bpnet.h"

/*
 * How long to wait for the agent to leave RUNNING after host_state DOWN. The
 * wait is the slow path's (polling every BPNET_STOP_POLL_MS): ndo_stop and
 * MTU changes return at once under rtnl, and link_lock is not held across it.
 * Only removal waits in place.
 */
#define BPNET_STOP_WAIT_MS	1000
#define BPNET_STOP_POLL_MS	10
/* Probe: how long a board still booting may take to write the contract's magic. */
#define BPNET_PROBE_WAIT_MS	2000
#define BPNET_PROBE_POLL_MS	50
/* Set-ups refused in a row back off: 1, 2, 4, then every 8 s. */
#define BPNET_BACKOFF_MAX_SHIFT	3
/* Slow-path ticks (1 s) to wait for RUNNING before re-initialising. */
#define BPNET_UP_TICKS		5
/*
 * The agent beats about once a second while RUNNING; read once a slow-path
 * tick (1 s), a beat unchanged for heartbeat_timeout_ms means its processor
 * stopped: the carrier goes down at most that plus two ticks (5 s by default)
 * after the last beat. Longer for boards whose clock may lag the host's (an
 * emulated chassis sharing a few cores); 0 turns the check off.
 */
static unsigned int heartbeat_timeout_ms = 3000;
module_param(heartbeat_timeout_ms, uint, 0444);
MODULE_PARM_DESC(heartbeat_timeout_ms,
		 "How long the agent's heartbeat may stand still before its carrier goes down (ms, 0: never)");
/* Ticks (1 s) without progress, TX pending and the agent beating, before a health report. */
#define BPNET_STALL_TICKS	5
/* Reset requests for an unusable header before the host gives up (per episode). */
#define BPNET_RESET_REQUESTS_MAX	3
/*
 * Interrupt storms. An agent rings STATUS only after a status block DMA that
 * moved something in its header (completions, or once per connection its
 * state), and LINK only after it changed its state byte in the header. So an
 * interrupt of the agent's own (the personality claimed it) that finds
 * nothing new where its bit points is noise, and a run of them is a storm:
 * BPNET_STORM_IDLE in a row, each within BPNET_STORM_GAP of the one before.
 *
 * Normal traffic makes no such run: moderation and event-index suppression
 * only drop or delay rings, never add one without a new DMA; a handler that
 * looks late may see the next DMA early, which leaves that ring's interrupt
 * with nothing new, alone (the next one brings something and ends the run);
 * the echo of a posted ODR clear after EOI finds ODR empty and is not the
 * agent's. A storm interrupts again as soon as the handler lets it: on a
 * shared level-triggered INTx line once per ODR clear, so at whatever rate
 * the handler's BAR round trips allow (about a hundred a second through the
 * virtual backplane's proxied BAR under load, far more on real PCI), with
 * MSI-X without limit. A rate threshold misses the slow ones, where each
 * interrupt costs the most; a run is caught after BPNET_STORM_IDLE
 * interrupts at any rate above one per BPNET_STORM_GAP.
 */
#define BPNET_STORM_IDLE	32
#define BPNET_STORM_GAP		HZ

static unsigned int offer_features = BPNET_F_ALL;
module_param(offer_features, uint, 0444);
MODULE_PARM_DESC(offer_features, "Feature bits the host accepts when the agent offers them");

/* A byte of the header, read as the aligned word holding it (slow path). */
u8 bpnet_read_header_byte(struct bpnet *bp, u32 offset)
{
	u32 word = bpnet_slow_read32(bp, offset & ~3U);

	return word >> (8 * (offset & 3));
}

static void bpnet_vrefuse(struct bpnet *bp, const char *fmt, va_list *args)
{
	struct va_format vaf = { .fmt = fmt, .va = args };

	bpnet_count(bp, BPNET_STAT_contract_errors, 1);
	if (net_ratelimit())
		netdev_err(bp->netdev, "agent broke the contract: %pV\n", &vaf);
}

/* Refused input: counted and logged (rate-limited); the caller refuses it. */
void bpnet_refuse(struct bpnet *bp, const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	bpnet_vrefuse(bp, fmt, &args);
	va_end(args);
}

/*
 * A violation on the data path: stop using the rings at once and let the slow
 * path reset the link. Other agents are separate devices and go on.
 */
void bpnet_broken(struct bpnet *bp, const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	bpnet_vrefuse(bp, fmt, &args);
	va_end(args);
	bp->broken = true;
	netif_carrier_off(bp->netdev);
	bpnet_link_event(bp);
}

/* How a refusal found while parsing the header is reported. */
enum bpnet_refusal {
	/* Probe: neither counted nor logged (the device may not be an agent). */
	BPNET_REFUSE_QUIET,
	/* Counted only: this run of failed set-ups was logged already. */
	BPNET_REFUSE_COUNT,
	/* Counted and logged. */
	BPNET_REFUSE_LOG,
};

static __printf(3, 4) void bpnet_parse_refuse(struct bpnet *bp, enum bpnet_refusal how,
					      const char *fmt, ...)
{
	va_list args;

	if (how != BPNET_REFUSE_QUIET) {
		va_start(args, fmt);
		vsnprintf(bp->fault, sizeof(bp->fault), fmt, args);
		va_end(args);
		/* Each kind of fault once per episode, whatever its values. */
		if (bp->fault_logged == fmt)
			how = BPNET_REFUSE_COUNT;
		else if (how == BPNET_REFUSE_LOG)
			bp->fault_logged = fmt;
	}
	if (how == BPNET_REFUSE_LOG) {
		va_start(args, fmt);
		bpnet_vrefuse(bp, fmt, &args);
		va_end(args);
	} else if (how == BPNET_REFUSE_COUNT) {
		bpnet_count(bp, BPNET_STAT_contract_errors, 1);
	}
}

/*
 * A surprise-removed device reads all ones (or the PCI core knows it is
 * gone): it can DMA no more, so nothing needs to be waited for.
 */
static bool bpnet_device_gone(struct bpnet *bp, u32 word)
{
	return pci_dev_is_disconnected(bp->pdev) ||
	       (word == ~0U && bpnet_slow_read32(bp, BPNET_HEADER(magic)) == ~0U);
}

/* The agent's header, read once through the BAR: 16 word reads. */
static void bpnet_read_header(struct bpnet *bp, struct bpnet_header *header)
{
	__le32 *words = (__le32 *)header;
	unsigned int i;

	for (i = 0; i < BPNET_HEADER_LEN / 4; i++)
		words[i] = cpu_to_le32(bpnet_slow_read32(bp, BPNET_HEADER_OFFSET + 4 * i));
}

/*
 * parse_dma_reach: the agent info block's dma_reach (two slow-path word
 * reads, at set-up only); an agent of minor version 1 has none and reaches
 * BPNET_DMA_REACH_MINOR_1.
 */
static int bpnet_read_dma_reach(struct bpnet *bp, const struct bpnet_header *header, u64 *reach)
{
	u32 at = BPNET_AGENT_INFO_OFFSET + offsetof(struct bpnet_agent_info, dma_reach);
	u64 value;

	if (le16_to_cpu(header->version_minor) < BPNET_VERSION_MINOR_AGENT_INFO) {
		*reach = BPNET_DMA_REACH_MINOR_1;
		return 0;
	}
	value = bpnet_slow_read32(bp, at);
	value |= (u64)bpnet_slow_read32(bp, at + 4) << 32;
	if (value < BPNET_DMA_REACH_MIN) {
		bpnet_parse_refuse(bp, BPNET_REFUSE_LOG, "DMA reach %#llx is below one page",
				   value);
		return -EPROTO;
	}
	*reach = value;
	return 0;
}

/*
 * The DMA mask from the agent's reach: the largest 2^n - 1 below it, so every
 * mapping (skbs, the status block) lands where the agent's outbound windows
 * reach. Where host RAM extends above it, the DMA API keeps buffers below the
 * mask through an IOMMU (mappings are IOVAs then) or swiotlb's bounce buffers
 * (a CPU copy per buffer); with neither, such a mapping fails and the frame is
 * counted as dropped. The DMA API refusing the mask altogether is the one case
 * refused here.
 */
static int bpnet_set_dma_reach(struct bpnet *bp, u64 reach)
{
	struct device *dev = &bp->pdev->dev;
	int err;

	if (bp->dma_mask_reach == reach)
		return 0;
	err = dma_set_mask_and_coherent(dev, DMA_BIT_MASK(ilog2(reach)));
	if (err) {
		netdev_err(bp->netdev, "the agent's DMA reaches host bus addresses below %#llx only, and the DMA API cannot keep this device's buffers there\n",
			   reach);
		return err;
	}
	bp->dma_mask_reach = reach;
	if (dma_addressing_limited(dev))
		netdev_info(bp->netdev, "host RAM extends above the agent's DMA reach %#llx: buffers there go through an IOMMU or swiotlb bounce buffers, or are dropped\n",
			    reach);
	return 0;
}

/*
 * AgentRepr::parse and Layout::check: magic, major version, ring size, and
 * every region (the fixed header, doorbells and boot block among them)
 * aligned, inside the shared region and apart from the others.
 */
static int bpnet_parse_agent(struct bpnet *bp, const struct bpnet_header *header,
			     struct bpnet_agent *agent, enum bpnet_refusal how)
{
	struct {
		u32 at;
		u32 len;
		u32 align;
	} regions[7];
	u32 magic = le32_to_cpu(header->magic);
	u16 major = le16_to_cpu(header->version_major);
	u32 entries = le16_to_cpu(header->ring_entries);
	unsigned int i, j;

	if (magic != BPNET_MAGIC) {
		bpnet_parse_refuse(bp, how, "magic %#010x, expected %#010x", magic, BPNET_MAGIC);
		return -EPROTO;
	}
	if (major != BPNET_VERSION_MAJOR) {
		bpnet_parse_refuse(bp, how, "contract version %u.%u, expected major %u", major,
				   le16_to_cpu(header->version_minor), BPNET_VERSION_MAJOR);
		return -EPROTO;
	}
	if (entries < BPNET_RING_ENTRIES_MIN || entries > BPNET_RING_ENTRIES_MAX ||
	    !is_power_of_2(entries)) {
		bpnet_parse_refuse(bp, how, "ring size %u is not a power of two in %u..=%u",
				   entries, BPNET_RING_ENTRIES_MIN, BPNET_RING_ENTRIES_MAX);
		return -EPROTO;
	}
	agent->features = le32_to_cpu(header->agent_features);
	agent->generation = le32_to_cpu(header->agent_generation);
	agent->firmware_version = le32_to_cpu(header->firmware_version);
	agent->tx_ring = le32_to_cpu(header->tx_ring_offset);
	agent->rx_ring = le32_to_cpu(header->rx_ring_offset);
	agent->log_ring = le32_to_cpu(header->log_ring_offset);
	agent->counters = le32_to_cpu(header->counters_offset);
	memcpy(agent->mac, header->mac, ETH_ALEN);
	agent->ring_entries = entries;
	agent->version_minor = le16_to_cpu(header->version_minor);

	/* The fixed regions first; the boot block is the boot stage's and the host's. */
	regions[0].at = BPNET_HEADER_OFFSET;
	regions[0].len = BPNET_HEADER_LEN;
	regions[0].align = 64;
	regions[1].at = BPNET_DOORBELLS_OFFSET;
	regions[1].len = BPNET_DOORBELLS_LEN;
	regions[1].align = 64;
	regions[2].at = BPNET_BOOT_OFFSET;
	regions[2].len = sizeof(struct bpnet_boot_block);
	regions[2].align = 64;
	regions[3].at = agent->counters;
	regions[3].len = BPNET_COUNTERS_LEN;
	regions[3].align = 4;
	regions[4].at = agent->log_ring;
	regions[4].len = BPNET_LOG_RING_LEN;
	regions[4].align = 4;
	regions[5].at = agent->tx_ring;
	regions[5].len = entries * BPNET_DESCRIPTOR_LEN;
	regions[5].align = BPNET_DESCRIPTOR_LEN;
	regions[6].at = agent->rx_ring;
	regions[6].len = entries * BPNET_DESCRIPTOR_LEN;
	regions[6].align = BPNET_DESCRIPTOR_LEN;
	for (i = 0; i < ARRAY_SIZE(regions); i++) {
		u64 end = (u64)regions[i].at + regions[i].len;
		bool bad = regions[i].at % regions[i].align || end > BPNET_SHARED_LEN;

		for (j = 0; j < i && !bad; j++)
			bad = regions[i].at < (u64)regions[j].at + regions[j].len &&
			      regions[j].at < end;
		if (bad) {
			bpnet_parse_refuse(bp, how,
					   "region at %#x misaligned, outside or overlapping",
					   regions[i].at);
			return -EPROTO;
		}
	}
	return 0;
}

/* The agent's state changed, or the fast path saw trouble: run the slow path now. */
void bpnet_link_event(struct bpnet *bp)
{
	mod_delayed_work(system_wq, &bp->slow_work, 0);
}

/* Count one interrupt into its run: idle ones extend it, anything new ends it. */
static void bpnet_storm_count(struct bpnet_storm_run *run, bool idle, unsigned long now)
{
	if (!idle) {
		run->count = 0;
		return;
	}
	if (!run->count || time_after(now, run->last + BPNET_STORM_GAP)) {
		run->start = now;
		run->count = 0;
	}
	run->count++;
	run->last = now;
}

/*
 * Whether the status block's header moved since the last STATUS interrupt;
 * host RAM only. The caller holds storm_lock, so bpnet_reclaim cannot free
 * the block meanwhile. On mpc834x the caller's ODR read has pushed the DMA
 * the ring announced into host RAM; an MSI-X message arrives behind it.
 */
static bool bpnet_storm_status_moved(struct bpnet *bp)
{
	const __le32 *words = (const __le32 *)READ_ONCE(bp->status);
	bool moved = false;
	u32 i, word;

	/* No block (between connections): a STATUS ring announces nothing. */
	if (!words)
		return false;
	for (i = 0; i < BPNET_STORM_STATUS_WORDS; i++) {
		word = le32_to_cpu(READ_ONCE(words[i]));
		moved |= word != bp->storm_status_seen[i];
		bp->storm_status_seen[i] = word;
	}
	return moved;
}

/*
 * Every interrupt of the agent's, counted by the personality's handler (hard
 * IRQ) after it claimed the interrupt. True once the agent storms, until the
 * next set-up: the caller drops the event. The first time the link is broken
 * and, where the bus allows it, the agent's interrupts stay off.
 */
bool bpnet_interrupt_storm(struct bpnet *bp, bool link)
{
	unsigned long now = jiffies;
	struct bpnet_storm_run *run;
	bool storm, trip = false, masked;
	u32 state_word = 0;
	u32 count, ms;

	/* Tripped: dropped without a look (a mask that did not take). */
	if (READ_ONCE(bp->storm_tripped))
		return true;
	/*
	 * The word holding agent_state: one slow-path BAR read per LINK
	 * interrupt (a state change, rare), outside the lock.
	 */
	if (link)
		state_word = bpnet_slow_read32(bp, BPNET_HEADER(agent_state) & ~3U);
	spin_lock(&bp->storm_lock);
	if (link) {
		run = &bp->storm_link;
		bpnet_storm_count(run, state_word == bp->storm_state_seen, now);
		bp->storm_state_seen = state_word;
	} else {
		run = &bp->storm_status;
		bpnet_storm_count(run, !bpnet_storm_status_moved(bp), now);
	}
	count = run->count;
	ms = jiffies_to_msecs(now - run->start);
	if (!bp->storm_tripped && count >= BPNET_STORM_IDLE) {
		WRITE_ONCE(bp->storm_tripped, true);
		trip = true;
		if (bp->ops->mask && !bp->storm_masked) {
			bp->storm_masked = true;
			bp->ops->mask(bp, true);
		}
	}
	storm = bp->storm_tripped;
	masked = bp->storm_masked;
	spin_unlock(&bp->storm_lock);
	if (trip)
		bpnet_broken(bp,
			     "interrupt storm: %u %s interrupts in a row in %u ms brought nothing new%s",
			     count, link ? "LINK" : "STATUS", ms,
			     masked ? "; its interrupts are off until the next set-up" : "");
	return storm;
}

/*
 * Set-up and removal: new runs, and the agent's interrupts back on. A new
 * status block is zeroed, and so is what the last STATUS interrupt saw.
 */
void bpnet_storm_reset(struct bpnet *bp)
{
	unsigned long flags;
	bool masked;

	spin_lock_irqsave(&bp->storm_lock, flags);
	memset(bp->storm_status_seen, 0, sizeof(bp->storm_status_seen));
	bp->storm_state_seen = 0;
	bp->storm_status.count = 0;
	bp->storm_link.count = 0;
	WRITE_ONCE(bp->storm_tripped, false);
	masked = bp->storm_masked;
	bp->storm_masked = false;
	spin_unlock_irqrestore(&bp->storm_lock, flags);
	/* Masked under the lock, so this enable follows that disable. */
	if (masked)
		bp->ops->mask(bp, false);
}

/*
 * host_state DOWN, alone and as one byte, then WORK so a sleeping agent sees
 * it. No barrier: the doorbell is a posted write behind the state's, and PCI
 * keeps them in order, so the agent's bpnet_ring::Engine::poll, which reads
 * the header after the doorbell woke it, finds DOWN.
 */
static void bpnet_host_down(struct bpnet *bp)
{
	bpnet_write(bp, bp->shared + BPNET_HEADER(host_state), BPNET_HOST_STATE_DOWN, 1);
	bpnet_notify(bp);
}

/*
 * Whether the agent shows READY, RESET or RECOVERY: it publishes a state only
 * once no DMA chain is in flight, and BROKEN may still owe the status block
 * one, so only these promise the old connection is over. A device that is
 * gone (surprise removal) can DMA no more either. One read, no waiting.
 */
static bool bpnet_agent_stopped(struct bpnet *bp)
{
	u32 at = BPNET_HEADER(agent_state);
	u32 word = bpnet_slow_read32(bp, at & ~3U);
	u8 state = word >> (8 * (at & 3));

	return state == BPNET_AGENT_STATE_READY || state == BPNET_AGENT_STATE_RESET ||
	       state == BPNET_AGENT_STATE_RECOVERY || bpnet_device_gone(bp, word);
}

static void bpnet_reclaim(struct bpnet *bp)
{
	struct device *dev = &bp->pdev->dev;
	struct bpnet_status *status;
	u32 i;

	for (i = 0; i < bp->entries; i++) {
		struct bpnet_tx_slot *t = &bp->tx_slots[i];
		struct bpnet_rx_slot *r = &bp->rx_slots[i];

		if (t->skb) {
			dma_unmap_single(dev, t->addr, t->len, DMA_TO_DEVICE);
			dev_kfree_skb_any(t->skb);
			bpnet_count(bp, BPNET_STAT_tx_dropped, 1);
		}
		if (r->skb) {
			dma_unmap_single(dev, r->addr, bp->rx_buf_len, DMA_FROM_DEVICE);
			dev_kfree_skb_any(r->skb);
		}
		if (r->page) {
			dma_unmap_page(dev, r->addr, PAGE_SIZE, DMA_FROM_DEVICE);
			__free_page(r->page);
		}
	}
	/* A frame whose chain the agent never finished. */
	if (bp->rx_skb) {
		dev_kfree_skb_any(bp->rx_skb);
		bp->rx_skb = NULL;
	}
	kfree(bp->tx_slots);
	kfree(bp->rx_slots);
	bp->tx_slots = NULL;
	bp->rx_slots = NULL;
	/* Out of the storm check's sight before it is freed (bpnet_storm_status_moved). */
	spin_lock_irq(&bp->storm_lock);
	status = bp->status;
	WRITE_ONCE(bp->status, NULL);
	spin_unlock_irq(&bp->storm_lock);
	dma_free_coherent(dev, bp->status_len, status, bp->status_addr);
}

/*
 * Take the link down: carrier off, no more TX or NAPI, host_state DOWN, and
 * once the agent has stopped, every posted buffer and the status block back.
 * Never waits: while the agent has not stopped the link stays STOPPING with
 * everything allocated (it may still DMA into it), -EINPROGRESS is returned
 * and the slow path looks again every BPNET_STOP_POLL_MS. Past
 * BPNET_STOP_WAIT_MS that is said once; the slow path keeps looking.
 */
static int bpnet_link_down(struct bpnet *bp)
{
	lockdep_assert_held(&bp->link_lock);
	if (bp->state == BPNET_LINK_IDLE)
		return 0;
	if (bp->state == BPNET_LINK_UP) {
		netif_carrier_off(bp->netdev);
		/* NAPI first: its TX reaping could wake the queue again. */
		napi_disable(&bp->napi);
		netif_tx_disable(bp->netdev);
		WRITE_ONCE(bp->state, BPNET_LINK_STOPPING);
		bp->stop_deadline = jiffies + msecs_to_jiffies(BPNET_STOP_WAIT_MS);
		bp->stop_late = false;
		bpnet_host_down(bp);
	}
	if (!bpnet_agent_stopped(bp)) {
		if (!bp->stop_late && time_after(jiffies, bp->stop_deadline)) {
			bp->stop_late = true;
			netdev_err(bp->netdev, "agent still connected %u ms after host_state DOWN: its buffers stay allocated until it stops\n",
				   BPNET_STOP_WAIT_MS);
		}
		return -EINPROGRESS;
	}
	bpnet_reclaim(bp);
	WRITE_ONCE(bp->state, BPNET_LINK_IDLE);
	return 0;
}

/*
 * RECOVERY: the agent waits for an image through the BAR and its rings are not
 * live. Not broken, no carrier; said once per stay.
 */
static void bpnet_note_recovery(struct bpnet *bp, bool recovery)
{
	if (recovery && !bp->recovery) {
		netif_carrier_off(bp->netdev);
		netdev_info(bp->netdev, "agent in recovery: no carrier until it starts an image (bpnet_recovery, bpnet_control)\n");
	}
	bp->recovery = recovery;
}

/*
 * What one RX buffer of len bytes takes, at most. With RX_MULTI_BUFFER a page.
 * Without it __netdev_alloc_skb puts the headroom, the data and the shared
 * info in one page fragment (up to a page) or one kmalloc, whose size classes
 * above 256 bytes are powers of two, and above 8 KiB whole pages of the next
 * order.
 */
static u32 bpnet_rx_alloc_bytes(u32 len, bool multi)
{
	if (multi)
		return PAGE_SIZE;
	return roundup_pow_of_two(SKB_DATA_ALIGN(len + NET_SKB_PAD + NET_IP_ALIGN) +
				  SKB_DATA_ALIGN(sizeof(struct skb_shared_info)));
}

/*
 * Set-up (HostLink::up): read the header, check it, allocate the status block
 * and RX buffers, write the host's fields, zero the doorbells, post the RX
 * buffers, then host_state UP last as one byte, then WORK.
 */
static int bpnet_link_up(struct bpnet *bp)
{
	struct net_device *netdev = bp->netdev;
	struct device *dev = &bp->pdev->dev;
	struct bpnet_header header;
	struct bpnet_agent agent;
	enum bpnet_refusal how;
	u32 features, entries, i;
	bool csum;
	size_t status_len;
	dma_addr_t status_addr;
	void *status;
	u64 bus;
	int err;

	lockdep_assert_held(&bp->link_lock);
	if (bp->state != BPNET_LINK_IDLE)
		return -EBUSY;
	bpnet_read_header(bp, &header);
	/* A boot stage in recovery need not have written the rest of the header. */
	bpnet_note_recovery(bp, header.agent_state == BPNET_AGENT_STATE_RECOVERY);
	if (bp->recovery)
		return -EAGAIN;
	/* Each kind of refusal is logged once per episode (bpnet_parse_refuse). */
	how = BPNET_REFUSE_LOG;
	err = bpnet_parse_agent(bp, &header, &agent, how);
	if (err)
		return err;
	/*
	 * Booting: the slow path tries again. Before the agent info is read, as
	 * a boot stage has not published it and a zero reach is no violation.
	 */
	if (header.agent_state == BPNET_AGENT_STATE_RESET)
		return -EAGAIN;
	err = bpnet_read_dma_reach(bp, &header, &agent.dma_reach);
	if (err)
		return err;
	bp->agent = agent;
	/* ethtool reads the counters' offset without link_lock. */
	smp_store_release(&bp->agent_valid, true);
	switch (header.agent_state) {
	case BPNET_AGENT_STATE_READY:
		break;
	case BPNET_AGENT_STATE_RUNNING:
	case BPNET_AGENT_STATE_BROKEN:
		/* A connection this host did not make (reload, host reset): end it first. */
		bpnet_host_down(bp);
		return -EAGAIN;
	default:
		bpnet_parse_refuse(bp, how, "state %u is not defined", header.agent_state);
		return -EPROTO;
	}

	features = agent.features & offer_features & BPNET_F_ALL;
	if (!(features & BPNET_F_MTU) && netdev->mtu != BPNET_MTU_DEFAULT) {
		if (!bp->mtu_refused)
			netdev_err(netdev, "the MTU feature is not negotiated: MTU must be %u\n",
				   BPNET_MTU_DEFAULT);
		bp->mtu_refused = true;
		return -EINVAL;
	}
	err = bpnet_set_dma_reach(bp, agent.dma_reach);
	if (err)
		return err;
	entries = agent.ring_entries;
	status_len = BPNET_STATUS_BLOCK_LEN(entries);
	status = dma_alloc_coherent(dev, status_len, &status_addr, GFP_KERNEL);
	if (!status)
		return -ENOMEM;
	if (!status_addr || !IS_ALIGNED(status_addr, BPNET_STATUS_BLOCK_ALIGN) ||
	    !bpnet_in_reach(bp, status_addr, status_len)) {
		netdev_err(netdev, "status block at %pad unusable by the agent\n", &status_addr);
		dma_free_coherent(dev, status_len, status, status_addr);
		return -ENOMEM;
	}
	memset(status, 0, status_len);
	bp->tx_slots = kcalloc(entries, sizeof(*bp->tx_slots), GFP_KERNEL);
	bp->rx_slots = kcalloc(entries, sizeof(*bp->rx_slots), GFP_KERNEL);
	if (!bp->tx_slots || !bp->rx_slots) {
		kfree(bp->tx_slots);
		kfree(bp->rx_slots);
		bp->tx_slots = NULL;
		bp->rx_slots = NULL;
		dma_free_coherent(dev, status_len, status, status_addr);
		return -ENOMEM;
	}

	bp->features = features;
	bp->entries = entries;
	bp->buffer_len = netdev->mtu + ETH_HLEN;
	/*
	 * RX_MULTI_BUFFER: one order-0 page per buffer at any MTU (the agent's
	 * minimum is a page, and BPNET_RX_CHAIN_MAX pages hold the largest
	 * frame), so nothing above order 0 is allocated and the whole ring
	 * fits the posted budget.
	 */
	BUILD_BUG_ON(PAGE_SIZE < BPNET_RX_BUFFER_MIN);
	bp->rx_multi = features & BPNET_F_RX_MULTI_BUFFER;
	bp->rx_buf_len = bp->rx_multi ? PAGE_SIZE : bp->buffer_len;
	bp->rx_posted_max = min(entries,
				max(BPNET_RX_POSTED_MIN,
				    BPNET_RX_POSTED_BYTES /
				    bpnet_rx_alloc_bytes(bp->buffer_len, bp->rx_multi)));
	bp->rx_skb = NULL;
	bp->rx_chain = 0;
	bp->rx_chain_flags = 0;
	bp->rx_discard = false;
	/* Under storm_lock: the handlers look at it (bpnet_storm_status_moved). */
	spin_lock_irq(&bp->storm_lock);
	bp->status = status;
	spin_unlock_irq(&bp->storm_lock);
	bp->status_addr = status_addr;
	bp->status_len = status_len;
	bp->tx_prod = 0;
	bp->tx_prod_published = 0;
	bp->tx_seen = 0;
	bp->rx_prod = 0;
	bp->rx_seen = 0;
	WRITE_ONCE(bp->running, false);
	WRITE_ONCE(bp->broken, false);
	bp->tick_valid = false;
	bp->tick_rung = false;
	bp->tx_timeout_run = 0;
	WRITE_ONCE(bp->tx_stalled, false);
	/* Offered features follow the negotiation (bpnet_fix_features). */
	csum = features & BPNET_F_CSUM_OFFLOAD;
	if (csum != bp->csum_offload) {
		WRITE_ONCE(bp->csum_offload, csum);
		WRITE_ONCE(bp->features_stale, true);
	}
	/* The zeroed doorbells ask for an interrupt at the first completion. */
	bp->interrupts = true;
	bp->published_valid = true;
	bp->published_rx = 0;
	bp->published_tx = 0;
	bp->ticks_waiting = 0;
	bp->host_generation++;
	/* A new connection: its heartbeat is judged once the agent beats. */
	WRITE_ONCE(bp->heartbeat_known, false);
	WRITE_ONCE(bp->unresponsive, false);

	bus = status_addr;
	bpnet_write(bp, bp->shared + BPNET_HEADER(mtu), netdev->mtu, 2);
	bpnet_write(bp, bp->shared + BPNET_HEADER(status_block_addr), lower_32_bits(bus), 4);
	bpnet_write(bp, bp->shared + BPNET_HEADER(status_block_addr) + 4, upper_32_bits(bus), 4);
	bpnet_write(bp, bp->shared + BPNET_HEADER(host_features), features, 4);
	bpnet_write(bp, bp->shared + BPNET_HEADER(host_generation), bp->host_generation, 4);
	for (i = 0; i < BPNET_DOORBELLS_LEN; i += 4)
		bpnet_write(bp, bp->shared + BPNET_DOORBELLS_OFFSET + i, 0, 4);
	bpnet_fill_rx(bp, GFP_KERNEL, false);
	/* No bytes in flight for BQL: the last connection's were reclaimed. */
	netdev_reset_queue(netdev);
	/*
	 * The agent showed READY: it may master the bus from now on (its DMA
	 * and, on ivshmem, the MSI-X writes that are its interrupts).
	 */
	pci_set_master(bp->pdev);
	/* Before UP: the agent's first status interrupt must find NAPI enabled. */
	WRITE_ONCE(bp->state, BPNET_LINK_UP);
	napi_enable(&bp->napi);
	/* Interrupts a storm stopped come back with the new connection. */
	bpnet_storm_reset(bp);
	/*
	 * Last, alone and as one byte: an agent that sees UP sees everything
	 * before it, the zeroed status block and posted buffers in host RAM
	 * included. Pairs with the agent's bpnet_ring::Engine::poll, which
	 * reads the header through SharedRegion::read (a sync first) and takes
	 * the host's fields only once host_state is UP (HostRepr::parse).
	 */
	wmb();
	bpnet_write(bp, bp->shared + BPNET_HEADER(host_state), BPNET_HOST_STATE_UP, 1);
	bpnet_notify(bp);
	return 0;
}

/*
 * An agent whose header the host cannot use (scribbled over, half-written)
 * cannot be talked to through it: ask it to reset through the boot block's
 * host fields, which need no header (the request words in the contract's
 * order, then CONTROL, as bpnet_control does), and wait a whole back-off
 * period for it. The agent says READY with LINK when it is back, which runs
 * the slow path at once. Past BPNET_RESET_REQUESTS_MAX requests the host gives
 * up, says so once, and only retries the set-up quietly.
 */
u32 bpnet_send_request(struct bpnet *bp, u32 request, u32 recovery_len)
{
	u32 seq;

	/*
	 * No barrier: posted writes arrive in order, request_seq after the
	 * rest and CONTROL last (a recovery image before them all). Pairs with
	 * the agent's boot::take_request (bpnet-firmware) and, after a fault,
	 * fault::await_reset, which act once request_seq has moved.
	 */
	seq = bpnet_slow_read32(bp, BPNET_BOOT(request_seq)) + 1;
	bpnet_write(bp, bp->shared + BPNET_BOOT(recovery_len), recovery_len, 4);
	bpnet_write(bp, bp->shared + BPNET_BOOT(host_request), request, 4);
	bpnet_write(bp, bp->shared + BPNET_BOOT(request_seq), seq, 4);
	bp->ops->control(bp);
	bpnet_count(bp, BPNET_STAT_doorbells, 1);
	return seq;
}

static void bpnet_ask_reset(struct bpnet *bp)
{
	u32 seq;

	if (bp->reset_requests >= BPNET_RESET_REQUESTS_MAX) {
		if (!bp->reset_gave_up)
			netdev_err(bp->netdev, "agent still unusable after %u reset requests (%s): giving up; bpctl reset --hard or a power cycle\n",
				   bp->reset_requests, bp->fault);
		bp->reset_gave_up = true;
		return;
	}
	/*
	 * The agent rings LINK as it comes back from the last request, which
	 * runs set-up at once and may find its header half-written: that is
	 * not a new fault, so the next request waits the whole back-off period.
	 */
	if (bp->reset_requests &&
	    time_before(jiffies, bp->reset_asked_at + (HZ << BPNET_BACKOFF_MAX_SHIFT)))
		return;
	bp->reset_requests++;
	bp->reset_asked_at = jiffies;
	seq = bpnet_send_request(bp, BPNET_HOST_REQUEST_RESET, 0);
	bpnet_count(bp, BPNET_STAT_reset_requests, 1);
	netdev_warn(bp->netdev, "asking the agent to reset (request %u of %u, request_seq %u): %s\n",
		    bp->reset_requests, BPNET_RESET_REQUESTS_MAX, seq, bp->fault);
	bp->up_failures = BPNET_BACKOFF_MAX_SHIFT;
}

/*
 * Set-up from the slow path. A refusal starts or continues a run of failed
 * set-ups: each kind logged once, retried with a growing interval; a header
 * the host cannot use has the agent asked to reset. Waiting for a booting
 * agent (-EAGAIN) is not a failure.
 */
static void bpnet_link_try_up(struct bpnet *bp)
{
	int err = bpnet_link_up(bp);

	if (!err || err == -EAGAIN || err == -EBUSY)
		return;
	bp->up_failure_logged = true;
	if (bp->up_failures < BPNET_BACKOFF_MAX_SHIFT)
		bp->up_failures++;
	if (err == -EPROTO)
		bpnet_ask_reset(bp);
}

/* A new start (open, MTU change, a connection made): retry at once and log the next failure. */
static void bpnet_link_new_episode(struct bpnet *bp)
{
	bp->up_failures = 0;
	bp->up_failure_logged = false;
	bp->fault_logged = NULL;
	bp->reset_requests = 0;
	bp->reset_gave_up = false;
}

/*
 * The agent's heartbeat, one slow-path read a tick while connected. A beat
 * that stops for heartbeat_timeout_ms means its processor stopped (hung,
 * powered off, frozen): carrier off, counted, said once; the link is kept, so
 * an agent that resumes takes it up again where it was, carrier back on at its
 * next beat. Completions in the status block (host RAM, no bus read) are a
 * sign of life too: a board whose clock runs slow while it is saturated (an
 * emulated one) is busy, not dead. An agent without a heartbeat (minor version
 * 2, or 0: not started) is never taken for dead. True while the agent is
 * unresponsive.
 */
static bool bpnet_check_heartbeat(struct bpnet *bp)
{
	struct bpnet_status *st = bp->status;
	unsigned long now = jiffies, timeout;
	u32 beat, used;

	if (bp->agent.version_minor < BPNET_VERSION_MINOR_HEARTBEAT)
		return false;
	beat = bpnet_slow_read32(bp, BPNET_AGENT_INFO(heartbeat));
	if (!beat)
		return false;
	used = le32_to_cpu(READ_ONCE(st->tx_used)) + le32_to_cpu(READ_ONCE(st->rx_used));
	if (!bp->heartbeat_known || beat != bp->heartbeat || used != bp->heartbeat_used) {
		bp->heartbeat_used = used;
		if (bp->unresponsive) {
			netdev_info(bp->netdev, "agent answers again (heartbeat %u) after %u ms without a beat: carrier on\n",
				    beat, jiffies_to_msecs(now - bp->heartbeat_moved));
			WRITE_ONCE(bp->unresponsive, false);
			netif_carrier_on(bp->netdev);
			netif_wake_queue(bp->netdev);
		}
		WRITE_ONCE(bp->heartbeat, beat);
		WRITE_ONCE(bp->heartbeat_moved, now);
		WRITE_ONCE(bp->heartbeat_known, true);
		return false;
	}
	if (!heartbeat_timeout_ms)
		return false;
	timeout = msecs_to_jiffies(heartbeat_timeout_ms);
	if (!bp->unresponsive && time_after_eq(now, bp->heartbeat_moved + timeout)) {
		WRITE_ONCE(bp->unresponsive, true);
		bpnet_count(bp, BPNET_STAT_heartbeat_lost, 1);
		netif_carrier_off(bp->netdev);
		netdev_err(bp->netdev, "agent unresponsive: heartbeat %u unchanged and no completion for %u ms; carrier off until it beats again\n",
			   beat, jiffies_to_msecs(now - bp->heartbeat_moved));
	}
	return bp->unresponsive;
}

/*
 * Re-initialise without reloading: down, reclaim, new host_generation, up.
 * A reset before the agent ever ran backs the retries off like a refused
 * set-up; within a run of refusals already logged it is not said again.
 */
static void bpnet_link_reset(struct bpnet *bp, const char *why)
{
	if (!bp->up_failure_logged)
		netdev_info(bp->netdev, "re-initialising the link: %s\n", why);
	bpnet_count(bp, BPNET_STAT_link_resets, 1);
	if (!READ_ONCE(bp->running) && bp->up_failures < BPNET_BACKOFF_MAX_SHIFT)
		bp->up_failures++;
	if (bpnet_link_down(bp))
		return;
	if (bp->want_up)
		bpnet_link_try_up(bp);
}

/*
 * A posted index write or doorbell the agent missed (on real PCI the host may
 * read a stale event index and decide not to ring): when work the host posted
 * is outstanding and nothing in the status block moved for a whole tick, ring
 * WORK once more. Not again until the status moves, so an idle agent costs at
 * most one doorbell per quiet spell. Host RAM only.
 */
static void bpnet_check_progress(struct bpnet *bp)
{
	struct bpnet_status *st = bp->status;
	u32 tx_used = le32_to_cpu(READ_ONCE(st->tx_used));
	u32 rx_used = le32_to_cpu(READ_ONCE(st->rx_used));
	u32 tx_event = le32_to_cpu(READ_ONCE(st->tx_prod_event));
	u32 rx_event = le32_to_cpu(READ_ONCE(st->rx_prod_event));
	bool moved = !bp->tick_valid || tx_used != bp->tick_tx_used ||
		     rx_used != bp->tick_rx_used || tx_event != bp->tick_tx_event ||
		     rx_event != bp->tick_rx_event;
	/* TX frames not completed, or RX buffers posted beyond what the agent took. */
	bool outstanding = READ_ONCE(bp->tx_prod_published) != tx_used ||
			   READ_ONCE(bp->rx_prod) != rx_event;

	bp->tick_tx_used = tx_used;
	bp->tick_rx_used = rx_used;
	bp->tick_tx_event = tx_event;
	bp->tick_rx_event = rx_event;
	bp->tick_valid = true;
	if (moved) {
		bp->tick_rung = false;
		bp->stalled_ticks = 0;
		return;
	}
	/*
	 * TX frames pending (posted RX buffers are not work: an idle agent keeps
	 * them) and nothing moved for BPNET_STALL_TICKS though WORK was rung
	 * again and the agent beats: it is stuck. Reported once until it moves.
	 */
	if (READ_ONCE(bp->tx_prod_published) == tx_used) {
		bp->stalled_ticks = 0;
	} else if (bp->stalled_ticks < BPNET_STALL_TICKS &&
		   ++bp->stalled_ticks == BPNET_STALL_TICKS) {
		bpnet_health_note(bp, BPNET_RECOVER_RESET,
				  "no progress with work pending (tx_used %u, rx_used %u) though the agent beats",
				  tx_used, rx_used);
	}
	if (outstanding && !bp->tick_rung) {
		bp->tick_rung = true;
		bpnet_count(bp, BPNET_STAT_doorbells_resent, 1);
		bpnet_notify(bp);
	}
}

/* The slow path's look at an established link: two header reads. */
static void bpnet_link_check(struct bpnet *bp)
{
	u32 generation;
	u8 state;

	if (READ_ONCE(bp->broken)) {
		bpnet_health_note(bp, BPNET_RECOVER_LINK, "the agent broke the contract%s",
				  READ_ONCE(bp->storm_tripped) ? " (interrupt storm)" : "");
		bpnet_link_reset(bp, "the agent broke the contract");
		return;
	}
	if (READ_ONCE(bp->tx_stalled)) {
		bpnet_link_reset(bp, "the TX queue stayed stopped through two watchdog timeouts");
		return;
	}
	generation = bpnet_slow_read32(bp, BPNET_HEADER(agent_generation));
	state = bpnet_read_header_byte(bp, BPNET_HEADER(agent_state));
	if (bpnet_device_gone(bp, generation)) {
		bpnet_link_reset(bp, "the device is gone (reads all ones)");
		return;
	}
	if (generation != bp->agent.generation) {
		bpnet_link_reset(bp, "the agent was reset (new generation)");
		return;
	}
	switch (state) {
	case BPNET_AGENT_STATE_RUNNING:
	case BPNET_AGENT_STATE_READY:
		if (READ_ONCE(bp->running)) {
			if (state == BPNET_AGENT_STATE_READY) {
				bpnet_link_reset(bp, "the agent left RUNNING");
				break;
			}
			/* Connected: a new episode for the next trouble. */
			bpnet_link_new_episode(bp);
			/* A stopped agent moves nothing: no doorbell to resend. */
			if (bpnet_check_heartbeat(bp))
				break;
			bpnet_check_progress(bp);
		} else if (++bp->ticks_waiting > BPNET_UP_TICKS) {
			bpnet_link_reset(bp, "the agent did not take the host's fields");
			break;
		} else if (state == BPNET_AGENT_STATE_READY) {
			/* It may have slept through the first doorbell. */
			bpnet_notify(bp);
			break;
		}
		/* Safety net: a status update or completions left waiting. */
		if (!READ_ONCE(bp->running) || bpnet_status_pending(bp)) {
			local_bh_disable();
			napi_schedule(&bp->napi);
			local_bh_enable();
		}
		/* An RX refill NAPI could not allocate for. */
		if (READ_ONCE(bp->rx_prod) - READ_ONCE(bp->rx_seen) < bp->rx_posted_max)
			schedule_work(&bp->refill_work);
		break;
	case BPNET_AGENT_STATE_BROKEN:
		bpnet_health_note(bp, BPNET_RECOVER_LINK, "the agent is BROKEN");
		bpnet_link_reset(bp, "the agent is BROKEN (see its counters)");
		break;
	case BPNET_AGENT_STATE_RESET:
		netif_carrier_off(bp->netdev);
		bpnet_link_reset(bp, "the agent is resetting");
		break;
	case BPNET_AGENT_STATE_RECOVERY:
		bpnet_note_recovery(bp, true);
		bpnet_link_reset(bp, "the agent entered recovery");
		break;
	default:
		bpnet_parse_refuse(bp,
				   bp->up_failure_logged ? BPNET_REFUSE_COUNT : BPNET_REFUSE_LOG,
				   "state %u is not defined", state);
		bpnet_link_reset(bp, "undefined agent state");
		break;
	}
}

/*
 * netdev_update_features for a negotiation that changed checksum offload;
 * under rtnl, and only for a registered device.
 */
void bpnet_link_sync_features(struct bpnet *bp)
{
	ASSERT_RTNL();
	if (!READ_ONCE(bp->features_stale) || bp->netdev->reg_state != NETREG_REGISTERED)
		return;
	WRITE_ONCE(bp->features_stale, false);
	netdev_update_features(bp->netdev);
}

/*
 * A fault record the host has not read (fault_seq moved): read once per
 * sequence number. One whose vector is no exception vector is refused
 * (counted, said once per device: a host scribbling over the region makes
 * them) and not kept; the others are kept for
 * diagnose and the health dump. Reported when the program that faulted is the
 * one in place (its generation): it waits for the host's reset. A fault of an
 * earlier program is history, said at info level. One BAR read a tick; the
 * words are only printed and kept, never used for lengths or addresses.
 */
static void bpnet_check_fault(struct bpnet *bp)
{
	struct bpnet_fault f;
	u32 generation;

	if (!bp->agent_valid || bp->agent.version_minor < BPNET_VERSION_MINOR_BOARD_INFO)
		return;
	f.seq = bpnet_slow_read32(bp, BPNET_BOARD_INFO(fault_seq));
	if (!f.seq || f.seq == bp->fault_seen || bpnet_device_gone(bp, f.seq))
		return;
	bp->fault_seen = f.seq;
	/* The words after the sequence number: the agent wrote them before it. */
	f.vector = bpnet_slow_read32(bp, BPNET_BOARD_INFO(fault_vector));
	if (!f.vector || f.vector > BPNET_FAULT_VECTOR_MAX || f.vector % 0x100) {
		bpnet_count(bp, BPNET_STAT_contract_errors, 1);
		if (!bp->bogus_logged)
			netdev_warn(bp->netdev, "fault record %u ignored: vector %#x is no exception vector (counted in contract_errors, said once)\n",
				    f.seq, f.vector);
		bp->bogus_logged = true;
		return;
	}
	f.srr0 = bpnet_slow_read32(bp, BPNET_BOARD_INFO(fault_srr0));
	f.srr1 = bpnet_slow_read32(bp, BPNET_BOARD_INFO(fault_srr1));
	f.dar = bpnet_slow_read32(bp, BPNET_BOARD_INFO(fault_dar));
	f.dsisr = bpnet_slow_read32(bp, BPNET_BOARD_INFO(fault_dsisr));
	f.generation = bpnet_slow_read32(bp, BPNET_BOARD_INFO(fault_generation));
	f.uptime_s = bpnet_slow_read32(bp, BPNET_BOARD_INFO(fault_uptime_s));
	bp->fault_rec = f;
	generation = bpnet_slow_read32(bp, BPNET_HEADER(agent_generation));
	if (generation != f.generation) {
		netdev_info(bp->netdev, "agent fault %u of an earlier boot: vector %#x SRR0 %#010x\n",
			    f.seq, f.vector, f.srr0);
		return;
	}
	netdev_err(bp->netdev, "agent fault %u: vector %#x SRR0 %#010x SRR1 %#010x DAR %#010x DSISR %#010x after %u s\n",
		   f.seq, f.vector, f.srr0, f.srr1, f.dar, f.dsisr, f.uptime_s);
	bpnet_health_note(bp, BPNET_RECOVER_RESET, "agent fault: vector %#x at SRR0 %#010x",
			  f.vector, f.srr0);
}

static void bpnet_slow_work(struct work_struct *work)
{
	struct bpnet *bp = container_of(to_delayed_work(work), struct bpnet, slow_work);
	unsigned long delay;
	bool again;

	mutex_lock(&bp->link_lock);
	if (bp->ops->restore)
		bp->ops->restore(bp);
	bpnet_check_fault(bp);
	switch (bp->state) {
	case BPNET_LINK_STOPPING:
		if (!bpnet_link_down(bp) && bp->want_up)
			bpnet_link_try_up(bp);
		break;
	case BPNET_LINK_IDLE:
		if (bp->want_up && !bp->mtu_refused)
			bpnet_link_try_up(bp);
		break;
	case BPNET_LINK_UP:
		bpnet_link_check(bp);
		break;
	}
	/* Stopping is polled (nothing sleeps under link_lock); refusals back off. */
	if (bp->state == BPNET_LINK_STOPPING && !bp->stop_late)
		delay = msecs_to_jiffies(BPNET_STOP_POLL_MS);
	else if (bp->state == BPNET_LINK_IDLE)
		delay = HZ << bp->up_failures;
	else
		delay = HZ;
	again = bp->want_up || bp->state != BPNET_LINK_IDLE;
	mutex_unlock(&bp->link_lock);
	bpnet_devlink_port(bp);
	bpnet_health_flush(bp);
	if (READ_ONCE(bp->features_stale)) {
		rtnl_lock();
		bpnet_link_sync_features(bp);
		rtnl_unlock();
	}
	if (again)
		queue_delayed_work(system_wq, &bp->slow_work, delay);
}

void bpnet_link_init(struct bpnet *bp)
{
	mutex_init(&bp->link_lock);
	spin_lock_init(&bp->storm_lock);
	INIT_DELAYED_WORK(&bp->slow_work, bpnet_slow_work);
	INIT_WORK(&bp->refill_work, bpnet_refill_work);
}

/*
 * Probe: is this a bpnet agent at all? Only a device whose shared region
 * carries the contract's magic is taken; an empty region is given
 * BPNET_PROBE_WAIT_MS to fill (a board still booting). Then the MAC and the
 * offered features; a connection of an earlier host is ended so its DMA cannot
 * reach this one's RAM.
 */
int bpnet_link_probe(struct bpnet *bp)
{
	struct bpnet_header header;
	unsigned int waited;
	u32 magic;

	for (waited = 0;; waited += BPNET_PROBE_POLL_MS) {
		magic = bpnet_slow_read32(bp, BPNET_HEADER(magic));
		if (magic == BPNET_MAGIC)
			break;
		if (magic || waited >= BPNET_PROBE_WAIT_MS) {
			dev_info(&bp->pdev->dev, "not a bpnet agent (magic %#010x, expected %#010x): left alone\n",
				 magic, BPNET_MAGIC);
			return -ENODEV;
		}
		msleep(BPNET_PROBE_POLL_MS);
	}
	bpnet_read_header(bp, &header);
	if (bpnet_parse_agent(bp, &header, &bp->agent, BPNET_REFUSE_QUIET))
		return 0;
	bp->agent_valid = true;
	bp->csum_offload = bp->agent.features & offer_features & BPNET_F_CSUM_OFFLOAD;
	if (header.agent_state == BPNET_AGENT_STATE_RUNNING ||
	    header.agent_state == BPNET_AGENT_STATE_BROKEN)
		bpnet_host_down(bp);
	return 0;
}

/* The interface is up: connect now if the agent is ready, else the slow path keeps trying. */
void bpnet_link_open(struct bpnet *bp)
{
	mutex_lock(&bp->link_lock);
	bp->want_up = true;
	bp->mtu_refused = false;
	bpnet_link_new_episode(bp);
	/* The agent may have been reset while the interface was down. */
	if (bp->ops->restore)
		bp->ops->restore(bp);
	if (bp->state == BPNET_LINK_IDLE)
		bpnet_link_try_up(bp);
	mutex_unlock(&bp->link_lock);
	/* Set-up may wait for the agent (or a stop still under way): the slow path goes on. */
	queue_delayed_work(system_wq, &bp->slow_work, HZ);
}

/* Under rtnl: starts the tear-down and returns; the slow path finishes it. */
void bpnet_link_close(struct bpnet *bp)
{
	mutex_lock(&bp->link_lock);
	bp->want_up = false;
	if (bpnet_link_down(bp))
		mod_delayed_work(system_wq, &bp->slow_work, msecs_to_jiffies(BPNET_STOP_POLL_MS));
	mutex_unlock(&bp->link_lock);
}

int bpnet_link_change_mtu(struct bpnet *bp, int new_mtu)
{
	struct net_device *netdev = bp->netdev;

	mutex_lock(&bp->link_lock);
	if (bp->agent_valid && !(bp->agent.features & offer_features & BPNET_F_MTU) &&
	    new_mtu != BPNET_MTU_DEFAULT) {
		mutex_unlock(&bp->link_lock);
		netdev_err(netdev, "the MTU feature is not negotiated: MTU must be %u\n",
			   BPNET_MTU_DEFAULT);
		return -EINVAL;
	}
	/*
	 * The agent takes the MTU at set-up only: re-initialise with the new
	 * one. The old buffers keep their length until they are reclaimed.
	 */
	bpnet_link_down(bp);
	WRITE_ONCE(netdev->mtu, new_mtu);
	bp->mtu_refused = false;
	bpnet_link_new_episode(bp);
	if (bp->want_up && bp->state == BPNET_LINK_IDLE)
		bpnet_link_try_up(bp);
	else if (bp->state == BPNET_LINK_STOPPING)
		mod_delayed_work(system_wq, &bp->slow_work, msecs_to_jiffies(BPNET_STOP_POLL_MS));
	mutex_unlock(&bp->link_lock);
	bpnet_link_sync_features(bp);
	return 0;
}

/*
 * Take the link down for good and wait (link_lock held, dropped while
 * sleeping) until the agent stops or BPNET_STOP_WAIT_MS passed: only
 * removal and shutdown wait, never a path under rtnl. A surprise-removed
 * device is not waited for (bpnet_agent_stopped).
 */
static int bpnet_link_down_wait(struct bpnet *bp)
{
	int err;

	lockdep_assert_held(&bp->link_lock);
	for (;;) {
		err = bpnet_link_down(bp);
		if (err != -EINPROGRESS || bp->stop_late ||
		    time_after(jiffies, bp->stop_deadline))
			return err;
		mutex_unlock(&bp->link_lock);
		msleep(BPNET_STOP_POLL_MS);
		mutex_lock(&bp->link_lock);
	}
}

/*
 * Reboot, kexec, power-off (the PCI driver's .shutdown): whoever owns host RAM
 * next knows nothing of the buffers the agent holds. No more reconnecting,
 * the link down (host_state DOWN, then the bounded wait for the agent to stop
 * its DMA), then bus mastering off, which stops an agent that did not stop in
 * time at the bus. Nothing is freed: the system is going away.
 */
void bpnet_link_shutdown(struct bpnet *bp)
{
	cancel_delayed_work_sync(&bp->slow_work);
	cancel_work_sync(&bp->refill_work);
	mutex_lock(&bp->link_lock);
	bp->want_up = false;
	if (bpnet_link_down_wait(bp))
		netdev_err(bp->netdev, "agent did not stop its DMA before shutdown: bus mastering turned off\n");
	pci_clear_master(bp->pdev);
	mutex_unlock(&bp->link_lock);
}

/*
 * Removal (and a failed probe), with the interrupts already freed and no rtnl
 * held: the slow path stopped, then the link down for good, waiting
 * (bpnet_link_down_wait).
 */
void bpnet_link_free(struct bpnet *bp)
{
	int err;

	cancel_delayed_work_sync(&bp->slow_work);
	cancel_work_sync(&bp->refill_work);
	mutex_lock(&bp->link_lock);
	err = bpnet_link_down_wait(bp);
	if (err) {
		/*
		 * The agent still holds buffers and may DMA into them: stop it
		 * mastering the bus and never give that memory back.
		 */
		pci_clear_master(bp->pdev);
		netdev_err(bp->netdev, "agent did not stop: its %zu-byte status block and buffers are left allocated\n",
			   bp->status_len);
	}
	mutex_unlock(&bp->link_lock);
}
