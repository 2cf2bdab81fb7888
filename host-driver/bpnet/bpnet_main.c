// SPDX-License-Identifier: GPL-2.0
/*
 * bpnet: Ethernet over a PCI backplane, host side: the shared core.
 *
 * The host reads only its own RAM on the fast path. The agent's header is read
 * through the BAR at set-up and by the slow path (link checks, counters);
 * descriptors, producer and event indexes and the doorbell are posted writes;
 * completions and indexes come from the status block the agent DMAs into host
 * RAM. The agent's DMA engine moves every payload byte: skbs are mapped, never
 * copied. Everything the agent wrote is checked before use; a violation breaks
 * the link (logged, counted, carrier off) and the slow path re-initialises it.
 */

#include <linux/dma-mapping.h>
#include <linux/etherdevice.h>
#include <linux/io.h>
#include <linux/log2.h>
#include <linux/module.h>

#include "bpnet.h"

/* Every bus address handed to the agent lies below its outbound window's end. */
#define BPNET_DMA_MASK		DMA_BIT_MASK(ilog2(BPNET_HOST_WINDOW_BYTES))
/*
 * An event index this far ahead of the consumer is never passed while a
 * ring's worth of entries is in flight: the agent's interrupts stay off until
 * the host asks again (host.rs FAR).
 */
#define BPNET_FAR		BIT(31)
/* How long to wait for the agent to leave RUNNING after host_state DOWN. */
#define BPNET_STOP_WAIT_MS	1000
#define BPNET_STOP_POLL_MS	10
/* Slow-path ticks (1 s) to wait for RUNNING before re-initialising. */
#define BPNET_UP_TICKS		5
/*
 * An agent raises STATUS only after a status block DMA that carried
 * completions (or, once per connection, its state), and LINK only when its
 * state changes. More STATUS interrupts in a window than completions taken,
 * by this margin, or more LINK interrupts than this, is a storm.
 */
#define BPNET_STORM_WINDOW		HZ
#define BPNET_STORM_STATUS_SLACK	1000
#define BPNET_STORM_LINK		100

#define BPNET_HEADER(field) \
	(BPNET_HEADER_OFFSET + offsetof(struct bpnet_header, field))
#define BPNET_DOORBELL(field) \
	(BPNET_DOORBELLS_OFFSET + offsetof(struct bpnet_doorbells, field))
#define BPNET_BOOT(field) \
	(BPNET_BOOT_OFFSET + offsetof(struct bpnet_boot_block, field))

static unsigned int offer_features = BPNET_F_ALL;
module_param(offer_features, uint, 0444);
MODULE_PARM_DESC(offer_features, "Feature bits the host accepts when the agent offers them");

/* ring::need_event: virtio's event-index test on 32-bit indexes. */
static bool bpnet_need_event(u32 event, u32 new, u32 old)
{
	return (u32)(new - event - 1) < (u32)(new - old);
}

/*
 * ring::pending: entries produced but not consumed; false for a producer more
 * than a ring ahead of its consumer (or behind it).
 */
static bool bpnet_pending(u32 prod, u32 cons, u32 entries, u32 *n)
{
	*n = prod - cons;
	return *n <= entries;
}

static u32 bpnet_slot(const struct bpnet *bp, u32 index)
{
	return index & (bp->entries - 1);
}

static bool bpnet_in_window(dma_addr_t addr, u32 len)
{
	return (u64)addr + len <= BPNET_HOST_WINDOW_BYTES;
}

static struct bpnet_completion *bpnet_tx_completion(struct bpnet *bp, u32 index)
{
	u8 *block = (u8 *)bp->status;

	return (struct bpnet_completion *)(block +
		BPNET_STATUS_TX_COMPLETIONS_OFFSET(bp->entries)) + bpnet_slot(bp, index);
}

static struct bpnet_completion *bpnet_rx_completion(struct bpnet *bp, u32 index)
{
	u8 *block = (u8 *)bp->status;

	return (struct bpnet_completion *)(block +
		BPNET_STATUS_RX_COMPLETIONS_OFFSET(bp->entries)) + bpnet_slot(bp, index);
}

static void bpnet_notify(struct bpnet *bp)
{
	bp->ops->notify(bp);
	bpnet_count(bp, BPNET_STAT_doorbells, 1);
}

/* Ring when the agent's event lies between old and new, or always without EVENT_INDEX. */
static void bpnet_notify_if_wanted(struct bpnet *bp, u32 event, u32 new, u32 old)
{
	if (!(bp->features & BPNET_F_EVENT_INDEX) || bpnet_need_event(event, new, old))
		bpnet_notify(bp);
}

/* A byte of the header, read as the aligned word holding it (slow path). */
static u8 bpnet_read_header_byte(struct bpnet *bp, u32 offset)
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
static __printf(2, 3) void bpnet_refuse(struct bpnet *bp, const char *fmt, ...)
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
static __printf(2, 3) void bpnet_broken(struct bpnet *bp, const char *fmt, ...)
{
	va_list args;

	va_start(args, fmt);
	bpnet_vrefuse(bp, fmt, &args);
	va_end(args);
	bp->broken = true;
	netif_carrier_off(bp->netdev);
	bpnet_link_event(bp);
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
 * AgentRepr::parse and Layout::check: magic, major version, ring size, and
 * every region aligned, inside the shared region and apart from the others.
 */
static int bpnet_parse_agent(struct bpnet *bp, const struct bpnet_header *header,
			     struct bpnet_agent *agent, bool quiet)
{
	struct {
		u32 at;
		u32 len;
		u32 align;
	} regions[6];
	u32 magic = le32_to_cpu(header->magic);
	u16 major = le16_to_cpu(header->version_major);
	u32 entries = le16_to_cpu(header->ring_entries);
	unsigned int i, j;

	if (magic != BPNET_MAGIC) {
		if (!quiet)
			bpnet_refuse(bp, "magic %#010x, expected %#010x", magic, BPNET_MAGIC);
		return -EPROTO;
	}
	if (major != BPNET_VERSION_MAJOR) {
		if (!quiet)
			bpnet_refuse(bp, "contract version %u.%u, expected major %u", major,
				     le16_to_cpu(header->version_minor), BPNET_VERSION_MAJOR);
		return -EPROTO;
	}
	if (entries < BPNET_RING_ENTRIES_MIN || entries > BPNET_RING_ENTRIES_MAX ||
	    !is_power_of_2(entries)) {
		if (!quiet)
			bpnet_refuse(bp, "ring size %u is not a power of two in %u..=%u", entries,
				     BPNET_RING_ENTRIES_MIN, BPNET_RING_ENTRIES_MAX);
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

	regions[0].at = BPNET_HEADER_OFFSET;
	regions[0].len = BPNET_HEADER_LEN;
	regions[0].align = 64;
	regions[1].at = BPNET_DOORBELLS_OFFSET;
	regions[1].len = BPNET_DOORBELLS_LEN;
	regions[1].align = 64;
	regions[2].at = agent->counters;
	regions[2].len = BPNET_COUNTERS_LEN;
	regions[2].align = 4;
	regions[3].at = agent->log_ring;
	regions[3].len = BPNET_LOG_RING_LEN;
	regions[3].align = 4;
	regions[4].at = agent->tx_ring;
	regions[4].len = entries * BPNET_DESCRIPTOR_LEN;
	regions[4].align = BPNET_DESCRIPTOR_LEN;
	regions[5].at = agent->rx_ring;
	regions[5].len = entries * BPNET_DESCRIPTOR_LEN;
	regions[5].align = BPNET_DESCRIPTOR_LEN;
	for (i = 0; i < ARRAY_SIZE(regions); i++) {
		u64 end = (u64)regions[i].at + regions[i].len;
		bool bad = regions[i].at % regions[i].align || end > BPNET_SHARED_LEN;

		for (j = 0; j < i && !bad; j++)
			bad = regions[i].at < (u64)regions[j].at + regions[j].len &&
			      regions[j].at < end;
		if (bad) {
			if (!quiet)
				bpnet_refuse(bp, "region at %#x misaligned, outside or overlapping",
					     regions[i].at);
			return -EPROTO;
		}
	}
	return 0;
}

static void bpnet_write_descriptor(struct bpnet *bp, u32 ring_offset, u32 index,
				   dma_addr_t addr, u32 len, u16 flags)
{
	void __iomem *d = bp->shared + ring_offset + bpnet_slot(bp, index) * BPNET_DESCRIPTOR_LEN;
	u64 bus = addr;

	BUILD_BUG_ON(offsetof(struct bpnet_descriptor, flags) !=
		     offsetof(struct bpnet_descriptor, id) + 2);
	bpnet_write(bp, d + offsetof(struct bpnet_descriptor, addr), lower_32_bits(bus), 4);
	bpnet_write(bp, d + offsetof(struct bpnet_descriptor, addr) + 4, upper_32_bits(bus), 4);
	bpnet_write(bp, d + offsetof(struct bpnet_descriptor, len), len, 4);
	/* id is the low 16 bits of the free-running index; flags share the word. */
	bpnet_write(bp, d + offsetof(struct bpnet_descriptor, id),
		    (index & 0xffff) | (u32)flags << 16, 4);
}

/*
 * Write the used-event indexes: the next completion when the host wants
 * interrupts, far ahead while NAPI polls. A write is spent only when the
 * published value no longer says what the host wants. Without EVENT_INDEX the
 * agent ignores them, so nothing is written.
 */
static void bpnet_publish_events(struct bpnet *bp)
{
	u32 rx, tx;
	bool stale;

	if (!(bp->features & BPNET_F_EVENT_INDEX))
		return;
	if (bp->interrupts) {
		rx = bp->rx_seen;
		tx = bp->tx_seen;
		stale = !bp->published_valid || bp->published_rx != rx || bp->published_tx != tx;
	} else {
		u32 drx = bp->published_rx - bp->rx_seen;
		u32 dtx = bp->published_tx - bp->tx_seen;

		rx = bp->rx_seen + BPNET_FAR;
		tx = bp->tx_seen + BPNET_FAR;
		/* Far stays far while it is more than a ring ahead and not behind. */
		stale = !bp->published_valid ||
			drx <= bp->entries || drx > BPNET_FAR ||
			dtx <= bp->entries || dtx > BPNET_FAR;
	}
	if (!stale)
		return;
	bpnet_write(bp, bp->shared + BPNET_DOORBELL(rx_used_event), rx, 4);
	bpnet_write(bp, bp->shared + BPNET_DOORBELL(tx_used_event), tx, 4);
	bp->published_rx = rx;
	bp->published_tx = tx;
	bp->published_valid = true;
}

/*
 * Post empty buffers until rx_posted_max are posted, then move rx_prod once and
 * ring if the agent asked (not during set-up: WORK follows UP anyway).
 */
static void bpnet_fill_rx(struct bpnet *bp, gfp_t gfp, bool notify)
{
	struct device *dev = &bp->pdev->dev;
	u32 old = bp->rx_prod;

	while (bp->rx_prod - bp->rx_seen < bp->rx_posted_max) {
		struct bpnet_rx_slot *s = &bp->rx_slots[bpnet_slot(bp, bp->rx_prod)];
		struct sk_buff *skb;
		dma_addr_t addr;

		skb = __netdev_alloc_skb_ip_align(bp->netdev, bp->buffer_len, gfp);
		if (!skb) {
			bpnet_count(bp, BPNET_STAT_rx_dropped, 1);
			break;
		}
		addr = dma_map_single(dev, skb->data, bp->buffer_len, DMA_FROM_DEVICE);
		if (dma_mapping_error(dev, addr)) {
			dev_kfree_skb_any(skb);
			bpnet_count(bp, BPNET_STAT_rx_dropped, 1);
			break;
		}
		if (!bpnet_in_window(addr, bp->buffer_len)) {
			dma_unmap_single(dev, addr, bp->buffer_len, DMA_FROM_DEVICE);
			dev_kfree_skb_any(skb);
			bpnet_count(bp, BPNET_STAT_rx_dropped, 1);
			break;
		}
		s->skb = skb;
		s->addr = addr;
		bpnet_write_descriptor(bp, bp->agent.rx_ring, bp->rx_prod, addr, bp->buffer_len, 0);
		bp->rx_prod++;
	}
	if (bp->rx_prod == old)
		return;
	bpnet_write(bp, bp->shared + BPNET_DOORBELL(rx_prod), bp->rx_prod, 4);
	if (notify) {
		/* rx_prod out before the agent's event is read. */
		mb();
		bpnet_notify_if_wanted(bp, le32_to_cpu(READ_ONCE(bp->status->rx_prod_event)),
				       bp->rx_prod, old);
	}
}

/* Write tx_prod (deferred while the stack has more frames) and ring if asked. */
static void bpnet_publish_tx_prod(struct bpnet *bp)
{
	u32 old = bp->tx_prod_published;

	if (bp->tx_prod == old)
		return;
	bpnet_write(bp, bp->shared + BPNET_DOORBELL(tx_prod), bp->tx_prod, 4);
	bp->tx_prod_published = bp->tx_prod;
	/* tx_prod out before the agent's event is read. */
	mb();
	bpnet_notify_if_wanted(bp, le32_to_cpu(READ_ONCE(bp->status->tx_prod_event)),
			       bp->tx_prod, old);
}

static netdev_tx_t bpnet_start_xmit(struct sk_buff *skb, struct net_device *netdev)
{
	struct bpnet *bp = netdev_priv(netdev);
	struct device *dev = &bp->pdev->dev;
	struct bpnet_tx_slot *s;
	u16 flags = 0;
	dma_addr_t addr;

	if (bp->state != BPNET_LINK_UP || !bp->running || bp->broken)
		goto drop;
	if (!skb->len || skb->len > bp->buffer_len || skb_linearize(skb))
		goto drop;
	if (skb->ip_summed == CHECKSUM_PARTIAL) {
		if (bp->features & BPNET_F_CSUM_OFFLOAD)
			flags |= BPNET_DESC_F_NEEDS_CSUM;
		else if (skb_checksum_help(skb))
			goto drop;
	}
	if (bp->tx_prod - bp->tx_seen >= bp->entries) {
		netif_stop_queue(netdev);
		bpnet_publish_tx_prod(bp);
		return NETDEV_TX_BUSY;
	}
	addr = dma_map_single(dev, skb->data, skb->len, DMA_TO_DEVICE);
	if (dma_mapping_error(dev, addr))
		goto drop;
	if (!bpnet_in_window(addr, skb->len)) {
		dma_unmap_single(dev, addr, skb->len, DMA_TO_DEVICE);
		goto drop;
	}
	s = &bp->tx_slots[bpnet_slot(bp, bp->tx_prod)];
	s->skb = skb;
	s->addr = addr;
	s->len = skb->len;
	bpnet_write_descriptor(bp, bp->agent.tx_ring, bp->tx_prod, addr, skb->len, flags);
	bp->tx_prod++;
	skb_tx_timestamp(skb);
	if (bp->tx_prod - bp->tx_seen >= bp->entries)
		netif_stop_queue(netdev);
	if (!netdev_xmit_more() || netif_queue_stopped(netdev))
		bpnet_publish_tx_prod(bp);
	return NETDEV_TX_OK;

drop:
	bpnet_count(bp, BPNET_STAT_tx_dropped, 1);
	dev_kfree_skb_any(skb);
	if (bp->state == BPNET_LINK_UP && !netdev_xmit_more())
		bpnet_publish_tx_prod(bp);
	return NETDEV_TX_OK;
}

/* TX completions, under the TX queue lock so tx_prod and tx_seen are exact. */
static int bpnet_reap_tx(struct bpnet *bp, u32 tx_used, int budget)
{
	struct netdev_queue *txq = netdev_get_tx_queue(bp->netdev, 0);
	struct device *dev = &bp->pdev->dev;
	u32 n, in_flight;

	__netif_tx_lock(txq, smp_processor_id());
	/* The agent may complete only what was posted. */
	if (!bpnet_pending(tx_used, bp->tx_seen, bp->entries, &n) ||
	    !bpnet_pending(bp->tx_prod_published, tx_used, bp->entries, &in_flight)) {
		u32 seen = bp->tx_seen, prod = bp->tx_prod_published;

		__netif_tx_unlock(txq);
		bpnet_broken(bp, "tx_used %u outside tx_seen %u .. tx_prod %u",
			     tx_used, seen, prod);
		return -EPROTO;
	}
	while (n--) {
		struct bpnet_tx_slot *s = &bp->tx_slots[bpnet_slot(bp, bp->tx_seen)];
		struct bpnet_completion *c = bpnet_tx_completion(bp, bp->tx_seen);
		u16 id = le16_to_cpu(READ_ONCE(c->id));
		u16 flags = le16_to_cpu(READ_ONCE(c->flags));
		u32 len = le32_to_cpu(READ_ONCE(c->len));
		u32 index = bp->tx_seen;

		if ((flags & ~BPNET_COMPL_F_ALL) || len > s->len || id != (index & 0xffff) ||
		    !s->skb) {
			__netif_tx_unlock(txq);
			bpnet_broken(bp, "TX completion %u: id %u flags %#x len %u (posted %u, %u)",
				     index, id, flags, len, index & 0xffff, s->len);
			return -EPROTO;
		}
		dma_unmap_single(dev, s->addr, s->len, DMA_TO_DEVICE);
		if (flags & BPNET_COMPL_F_ERROR) {
			bpnet_count(bp, BPNET_STAT_tx_errors, 1);
		} else {
			bpnet_count(bp, BPNET_STAT_tx_frames, 1);
			bpnet_count(bp, BPNET_STAT_tx_bytes, s->len);
		}
		napi_consume_skb(s->skb, budget);
		s->skb = NULL;
		bp->tx_seen++;
	}
	if (netif_tx_queue_stopped(txq) && bp->running &&
	    bp->tx_prod - bp->tx_seen < bp->entries)
		netif_tx_wake_queue(txq);
	__netif_tx_unlock(txq);
	return 0;
}

/* RX completions, at most budget of them; then refill. */
static int bpnet_reap_rx(struct bpnet *bp, u32 rx_used, int budget)
{
	struct device *dev = &bp->pdev->dev;
	u32 n, posted, done;

	if (!bpnet_pending(rx_used, bp->rx_seen, bp->entries, &n) ||
	    !bpnet_pending(bp->rx_prod, rx_used, bp->entries, &posted)) {
		bpnet_broken(bp, "rx_used %u outside rx_seen %u .. rx_prod %u", rx_used,
			     bp->rx_seen, bp->rx_prod);
		return -EPROTO;
	}
	n = min_t(u32, n, budget);
	for (done = 0; done < n; done++) {
		struct bpnet_rx_slot *s = &bp->rx_slots[bpnet_slot(bp, bp->rx_seen)];
		struct bpnet_completion *c = bpnet_rx_completion(bp, bp->rx_seen);
		u16 id = le16_to_cpu(READ_ONCE(c->id));
		u16 flags = le16_to_cpu(READ_ONCE(c->flags));
		u32 len = le32_to_cpu(READ_ONCE(c->len));
		u32 index = bp->rx_seen;
		struct sk_buff *skb = s->skb;

		if ((flags & ~BPNET_COMPL_F_ALL) || len > bp->buffer_len ||
		    id != (index & 0xffff) || !skb) {
			bpnet_broken(bp, "RX completion %u: id %u flags %#x len %u (posted %u, %u)",
				     index, id, flags, len, index & 0xffff, bp->buffer_len);
			return -EPROTO;
		}
		s->skb = NULL;
		dma_unmap_single(dev, s->addr, bp->buffer_len, DMA_FROM_DEVICE);
		bp->rx_seen++;
		/* A refused buffer, or a runt eth_type_trans cannot parse. */
		if ((flags & BPNET_COMPL_F_ERROR) || len < ETH_HLEN) {
			bpnet_count(bp, BPNET_STAT_rx_errors, 1);
			dev_kfree_skb_any(skb);
			continue;
		}
		skb_put(skb, len);
		skb->protocol = eth_type_trans(skb, bp->netdev);
		if ((flags & BPNET_COMPL_F_NEEDS_CSUM) && (bp->features & BPNET_F_CSUM_OFFLOAD)) {
			/*
			 * The agent left the TCP/UDP checksum out, as virtio's
			 * NEEDS_CSUM: CHECKSUM_PARTIAL, completed only if the
			 * frame is forwarded.
			 */
			skb_reset_network_header(skb);
			if (skb_checksum_setup(skb, true)) {
				bpnet_count(bp, BPNET_STAT_rx_errors, 1);
				dev_kfree_skb_any(skb);
				continue;
			}
		} else if ((flags & BPNET_COMPL_F_CSUM_VALID) &&
			   (bp->features & BPNET_F_CSUM_OFFLOAD) &&
			   (bp->netdev->features & NETIF_F_RXCSUM)) {
			skb->ip_summed = CHECKSUM_UNNECESSARY;
		}
		bpnet_count(bp, BPNET_STAT_rx_frames, 1);
		bpnet_count(bp, BPNET_STAT_rx_bytes, len);
		napi_gro_receive(&bp->napi, skb);
	}
	bpnet_fill_rx(bp, GFP_ATOMIC, true);
	return done;
}

/* Take what the status block reports. Returns RX frames taken, or < 0 when broken. */
static int bpnet_reap(struct bpnet *bp, int budget)
{
	struct bpnet_status *st = bp->status;
	u32 cause = le32_to_cpu(READ_ONCE(st->interrupt_cause)) & BPNET_CAUSE_ALL;
	u32 generation = le32_to_cpu(READ_ONCE(st->agent_generation));
	u32 tx_used = le32_to_cpu(READ_ONCE(st->tx_used));
	u32 rx_used = le32_to_cpu(READ_ONCE(st->rx_used));

	/* The agent DMAs the header after the completions: indexes first, then what they cover. */
	dma_rmb();
	if (cause && generation != bp->agent.generation) {
		bpnet_broken(bp, "status block of agent generation %u, connected to %u", generation,
			     bp->agent.generation);
		return -EPROTO;
	}
	if (!bp->running && cause) {
		/* The first status DMA: the agent took the host's fields and is RUNNING. */
		bp->running = true;
		netdev_info(bp->netdev, "link up: firmware %u.%u.%u, %u entries, features %#x, MTU %u\n",
			    (bp->agent.firmware_version >> 16) & 0xff,
			    (bp->agent.firmware_version >> 8) & 0xff,
			    bp->agent.firmware_version & 0xff, bp->entries, bp->features,
			    bp->buffer_len - ETH_HLEN);
		netif_carrier_on(bp->netdev);
		netif_wake_queue(bp->netdev);
	}
	/* The agent refused an index and went BROKEN: the slow path reads why. */
	if ((cause & BPNET_CAUSE_LINK) && (cause & BPNET_CAUSE_ERROR))
		bpnet_link_event(bp);
	if (bpnet_reap_tx(bp, tx_used, budget))
		return -EPROTO;
	return bpnet_reap_rx(bp, rx_used, budget);
}

/* Completions the host has not taken yet (host RAM only). */
static bool bpnet_status_pending(struct bpnet *bp)
{
	struct bpnet_status *st = bp->status;

	return le32_to_cpu(READ_ONCE(st->tx_used)) != READ_ONCE(bp->tx_seen) ||
	       le32_to_cpu(READ_ONCE(st->rx_used)) != READ_ONCE(bp->rx_seen);
}

static int bpnet_poll(struct napi_struct *napi, int budget)
{
	struct bpnet *bp = container_of(napi, struct bpnet, napi);
	bool pending;
	int done;

	if (bp->broken)
		goto idle;
	bp->interrupts = false;
	done = bpnet_reap(bp, budget);
	if (done < 0)
		goto idle;
	if (done == budget) {
		/* Polling on: no interrupts until the host asks again. */
		bpnet_publish_events(bp);
		return budget;
	}
	/*
	 * About to sleep: ask for an interrupt at the next completion, then
	 * look once more, so a completion the agent made before it saw the
	 * new event is not left waiting.
	 */
	bp->interrupts = true;
	bpnet_publish_events(bp);
	/* The event write before the status block is looked at again. */
	mb();
	pending = bpnet_status_pending(bp);
	if (napi_complete_done(napi, done) && pending)
		napi_schedule(napi);
	return done;

idle:
	napi_complete(napi);
	return 0;
}

void bpnet_status_event(struct bpnet *bp)
{
	napi_schedule(&bp->napi);
}

/* The agent's state changed, or the fast path saw trouble: run the slow path now. */
void bpnet_link_event(struct bpnet *bp)
{
	mod_delayed_work(system_wq, &bp->slow_work, 0);
}

/* Completions NAPI has taken so far. */
static u64 bpnet_completions(struct bpnet *bp)
{
	return atomic64_read(&bp->stats[BPNET_STAT_tx_frames]) +
	       atomic64_read(&bp->stats[BPNET_STAT_tx_errors]) +
	       atomic64_read(&bp->stats[BPNET_STAT_rx_frames]) +
	       atomic64_read(&bp->stats[BPNET_STAT_rx_errors]);
}

/* A new storm window; the caller holds storm_lock. */
static void bpnet_storm_window(struct bpnet *bp, unsigned long now)
{
	bp->storm_window = now;
	bp->storm_status = 0;
	bp->storm_link = 0;
	bp->storm_done = bpnet_completions(bp);
	bp->storm_tripped = false;
}

/*
 * Every interrupt of the agent's, counted by the personality's handler (hard
 * IRQ). True while the agent storms: the caller drops the event. The first
 * time in a window the link is broken and, where the bus allows it, the
 * agent's interrupts stay off until the next set-up.
 */
bool bpnet_interrupt_storm(struct bpnet *bp, bool link)
{
	unsigned long now = jiffies;
	bool storm, trip = false, masked;
	u32 status, links, ms;
	u64 done;

	spin_lock(&bp->storm_lock);
	if (time_after_eq(now, bp->storm_window + BPNET_STORM_WINDOW))
		bpnet_storm_window(bp, now);
	if (link)
		bp->storm_link++;
	else
		bp->storm_status++;
	status = bp->storm_status;
	links = bp->storm_link;
	done = bpnet_completions(bp) - bp->storm_done;
	ms = jiffies_to_msecs(now - bp->storm_window);
	storm = links > BPNET_STORM_LINK || status > done + BPNET_STORM_STATUS_SLACK;
	if (storm && !bp->storm_tripped) {
		bp->storm_tripped = true;
		trip = true;
		if (bp->ops->mask && !bp->storm_masked) {
			bp->storm_masked = true;
			bp->ops->mask(bp, true);
		}
	}
	masked = bp->storm_masked;
	spin_unlock(&bp->storm_lock);
	if (trip)
		bpnet_broken(bp,
			     "interrupt storm: %u STATUS interrupts for %llu completions and %u LINK interrupts in %u ms%s",
			     status, done, links, ms,
			     masked ? "; its interrupts are off until the next set-up" : "");
	return storm;
}

/* Set-up and removal: a new storm window, and the agent's interrupts back on. */
static void bpnet_storm_reset(struct bpnet *bp)
{
	unsigned long flags;
	bool masked;

	spin_lock_irqsave(&bp->storm_lock, flags);
	bpnet_storm_window(bp, jiffies);
	masked = bp->storm_masked;
	bp->storm_masked = false;
	spin_unlock_irqrestore(&bp->storm_lock, flags);
	/* Masked under the lock, so this enable follows that disable. */
	if (masked)
		bp->ops->mask(bp, false);
}

/* host_state DOWN, alone and as one byte, then WORK so a sleeping agent sees it. */
static void bpnet_host_down(struct bpnet *bp)
{
	bpnet_write(bp, bp->shared + BPNET_HEADER(host_state), BPNET_HOST_STATE_DOWN, 1);
	bpnet_notify(bp);
}

/*
 * Wait, bounded, until the agent shows READY, RESET or RECOVERY: it publishes
 * a state only once no DMA chain is in flight, and BROKEN may still owe the
 * status block one, so only these promise the old connection is over.
 */
static bool bpnet_wait_agent_stopped(struct bpnet *bp)
{
	unsigned int waited;

	for (waited = 0;; waited += BPNET_STOP_POLL_MS) {
		u8 state = bpnet_read_header_byte(bp, BPNET_HEADER(agent_state));

		if (state == BPNET_AGENT_STATE_READY || state == BPNET_AGENT_STATE_RESET ||
		    state == BPNET_AGENT_STATE_RECOVERY)
			return true;
		if (waited >= BPNET_STOP_WAIT_MS)
			return false;
		msleep(BPNET_STOP_POLL_MS);
	}
}

static void bpnet_reclaim(struct bpnet *bp)
{
	struct device *dev = &bp->pdev->dev;
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
			dma_unmap_single(dev, r->addr, bp->buffer_len, DMA_FROM_DEVICE);
			dev_kfree_skb_any(r->skb);
		}
	}
	kfree(bp->tx_slots);
	kfree(bp->rx_slots);
	bp->tx_slots = NULL;
	bp->rx_slots = NULL;
	dma_free_coherent(dev, bp->status_len, bp->status, bp->status_addr);
	bp->status = NULL;
}

/*
 * Take the link down: carrier off, no more TX or NAPI, host_state DOWN, and
 * once the agent has stopped, every posted buffer and the status block back.
 * If the agent does not stop in time, everything stays allocated (it may still
 * DMA into it) and the slow path tries again.
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
		bp->state = BPNET_LINK_STOPPING;
		bpnet_host_down(bp);
	}
	if (!bpnet_wait_agent_stopped(bp)) {
		if (net_ratelimit())
			netdev_err(bp->netdev, "agent still connected %u ms after host_state DOWN: its buffers stay allocated\n",
				   BPNET_STOP_WAIT_MS);
		return -ETIMEDOUT;
	}
	bpnet_reclaim(bp);
	bp->state = BPNET_LINK_IDLE;
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
	u32 features, entries, i;
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
	err = bpnet_parse_agent(bp, &header, &agent, false);
	if (err)
		return err;
	bp->agent = agent;
	bp->agent_valid = true;
	switch (header.agent_state) {
	case BPNET_AGENT_STATE_READY:
		break;
	case BPNET_AGENT_STATE_RUNNING:
	case BPNET_AGENT_STATE_BROKEN:
		/* A connection this host did not make (reload, host reset): end it first. */
		bpnet_host_down(bp);
		return -EAGAIN;
	case BPNET_AGENT_STATE_RESET:
		/* Booting: the slow path tries again. */
		return -EAGAIN;
	default:
		bpnet_refuse(bp, "state %u is not defined", header.agent_state);
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
	entries = agent.ring_entries;
	status_len = BPNET_STATUS_BLOCK_LEN(entries);
	status = dma_alloc_coherent(dev, status_len, &status_addr, GFP_KERNEL);
	if (!status)
		return -ENOMEM;
	if (!status_addr || !IS_ALIGNED(status_addr, BPNET_STATUS_BLOCK_ALIGN) ||
	    !bpnet_in_window(status_addr, status_len)) {
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
	bp->rx_posted_max = min(entries,
				max(BPNET_RX_POSTED_MIN, BPNET_RX_POSTED_BYTES / bp->buffer_len));
	bp->status = status;
	bp->status_addr = status_addr;
	bp->status_len = status_len;
	bp->tx_prod = 0;
	bp->tx_prod_published = 0;
	bp->tx_seen = 0;
	bp->rx_prod = 0;
	bp->rx_seen = 0;
	bp->running = false;
	bp->broken = false;
	/* The zeroed doorbells ask for an interrupt at the first completion. */
	bp->interrupts = true;
	bp->published_valid = true;
	bp->published_rx = 0;
	bp->published_tx = 0;
	bp->ticks_waiting = 0;
	bp->host_generation++;

	bus = status_addr;
	bpnet_write(bp, bp->shared + BPNET_HEADER(mtu), netdev->mtu, 2);
	bpnet_write(bp, bp->shared + BPNET_HEADER(status_block_addr), lower_32_bits(bus), 4);
	bpnet_write(bp, bp->shared + BPNET_HEADER(status_block_addr) + 4, upper_32_bits(bus), 4);
	bpnet_write(bp, bp->shared + BPNET_HEADER(host_features), features, 4);
	bpnet_write(bp, bp->shared + BPNET_HEADER(host_generation), bp->host_generation, 4);
	for (i = 0; i < BPNET_DOORBELLS_LEN; i += 4)
		bpnet_write(bp, bp->shared + BPNET_DOORBELLS_OFFSET + i, 0, 4);
	bpnet_fill_rx(bp, GFP_KERNEL, false);
	/* Before UP: the agent's first status interrupt must find NAPI enabled. */
	bp->state = BPNET_LINK_UP;
	napi_enable(&bp->napi);
	/* Interrupts a storm stopped come back with the new connection. */
	bpnet_storm_reset(bp);
	/* Last, alone and as one byte: an agent that sees UP sees everything before it. */
	wmb();
	bpnet_write(bp, bp->shared + BPNET_HEADER(host_state), BPNET_HOST_STATE_UP, 1);
	bpnet_notify(bp);
	return 0;
}

/* Re-initialise without reloading: down, reclaim, new host_generation, up. */
static void bpnet_link_reset(struct bpnet *bp, const char *why)
{
	netdev_info(bp->netdev, "re-initialising the link: %s\n", why);
	bpnet_count(bp, BPNET_STAT_link_resets, 1);
	if (bpnet_link_down(bp))
		return;
	if (bp->want_up)
		bpnet_link_up(bp);
}

/* The slow path's look at an established link: two header reads. */
static void bpnet_link_check(struct bpnet *bp)
{
	u32 generation;
	u8 state;

	if (bp->broken) {
		bpnet_link_reset(bp, "the agent broke the contract");
		return;
	}
	generation = bpnet_slow_read32(bp, BPNET_HEADER(agent_generation));
	state = bpnet_read_header_byte(bp, BPNET_HEADER(agent_state));
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
		} else if (++bp->ticks_waiting > BPNET_UP_TICKS) {
			bpnet_link_reset(bp, "the agent did not take the host's fields");
			break;
		} else if (state == BPNET_AGENT_STATE_READY) {
			/* It may have slept through the first doorbell. */
			bpnet_notify(bp);
			break;
		}
		/* Safety net: a status update, completions or an RX refill left waiting. */
		if (!READ_ONCE(bp->running) || bpnet_status_pending(bp) ||
		    READ_ONCE(bp->rx_prod) - READ_ONCE(bp->rx_seen) < bp->rx_posted_max) {
			local_bh_disable();
			napi_schedule(&bp->napi);
			local_bh_enable();
		}
		break;
	case BPNET_AGENT_STATE_BROKEN:
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
		bpnet_refuse(bp, "state %u is not defined", state);
		bpnet_link_reset(bp, "undefined agent state");
		break;
	}
}

static void bpnet_slow_work(struct work_struct *work)
{
	struct bpnet *bp = container_of(to_delayed_work(work), struct bpnet, slow_work);
	bool again;

	mutex_lock(&bp->link_lock);
	switch (bp->state) {
	case BPNET_LINK_STOPPING:
		if (!bpnet_link_down(bp) && bp->want_up)
			bpnet_link_up(bp);
		break;
	case BPNET_LINK_IDLE:
		if (bp->want_up && !bp->mtu_refused)
			bpnet_link_up(bp);
		break;
	case BPNET_LINK_UP:
		bpnet_link_check(bp);
		break;
	}
	again = bp->want_up || bp->state != BPNET_LINK_IDLE;
	mutex_unlock(&bp->link_lock);
	if (again)
		queue_delayed_work(system_wq, &bp->slow_work, HZ);
}

static int bpnet_open(struct net_device *netdev)
{
	struct bpnet *bp = netdev_priv(netdev);

	netif_carrier_off(netdev);
	netif_stop_queue(netdev);
	mutex_lock(&bp->link_lock);
	bp->want_up = true;
	bp->mtu_refused = false;
	if (bp->state == BPNET_LINK_IDLE)
		bpnet_link_up(bp);
	mutex_unlock(&bp->link_lock);
	/* Set-up may wait for the agent: the slow path retries. */
	queue_delayed_work(system_wq, &bp->slow_work, HZ);
	return 0;
}

static int bpnet_stop(struct net_device *netdev)
{
	struct bpnet *bp = netdev_priv(netdev);

	mutex_lock(&bp->link_lock);
	bp->want_up = false;
	bpnet_link_down(bp);
	mutex_unlock(&bp->link_lock);
	return 0;
}

static int bpnet_change_mtu(struct net_device *netdev, int new_mtu)
{
	struct bpnet *bp = netdev_priv(netdev);

	mutex_lock(&bp->link_lock);
	if (bp->agent_valid && !(bp->agent.features & offer_features & BPNET_F_MTU) &&
	    new_mtu != BPNET_MTU_DEFAULT) {
		mutex_unlock(&bp->link_lock);
		netdev_err(netdev, "the MTU feature is not negotiated: MTU must be %u\n",
			   BPNET_MTU_DEFAULT);
		return -EINVAL;
	}
	/* The agent takes the MTU at set-up only: re-initialise with the new one. */
	bpnet_link_down(bp);
	netdev->mtu = new_mtu;
	bp->mtu_refused = false;
	if (bp->want_up && bp->state == BPNET_LINK_IDLE)
		bpnet_link_up(bp);
	mutex_unlock(&bp->link_lock);
	return 0;
}

static void bpnet_get_stats64(struct net_device *netdev, struct rtnl_link_stats64 *stats)
{
	struct bpnet *bp = netdev_priv(netdev);

	stats->tx_packets = atomic64_read(&bp->stats[BPNET_STAT_tx_frames]);
	stats->tx_bytes = atomic64_read(&bp->stats[BPNET_STAT_tx_bytes]);
	stats->tx_errors = atomic64_read(&bp->stats[BPNET_STAT_tx_errors]);
	stats->tx_dropped = atomic64_read(&bp->stats[BPNET_STAT_tx_dropped]);
	stats->rx_packets = atomic64_read(&bp->stats[BPNET_STAT_rx_frames]);
	stats->rx_bytes = atomic64_read(&bp->stats[BPNET_STAT_rx_bytes]);
	stats->rx_errors = atomic64_read(&bp->stats[BPNET_STAT_rx_errors]);
	stats->rx_dropped = atomic64_read(&bp->stats[BPNET_STAT_rx_dropped]);
}

static const struct net_device_ops bpnet_netdev_ops = {
	.ndo_open = bpnet_open,
	.ndo_stop = bpnet_stop,
	.ndo_start_xmit = bpnet_start_xmit,
	.ndo_change_mtu = bpnet_change_mtu,
	.ndo_get_stats64 = bpnet_get_stats64,
	.ndo_set_mac_address = eth_mac_addr,
	.ndo_validate_addr = eth_validate_addr,
};

static int bpnet_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	const struct bpnet_bus_ops *ops = (const struct bpnet_bus_ops *)id->driver_data;
	struct bpnet_header header;
	struct net_device *netdev;
	struct bpnet *bp;
	int err, i;

	BUILD_BUG_ON_NOT_POWER_OF_2(BPNET_HOST_WINDOW_BYTES);
	netdev = alloc_etherdev(sizeof(*bp));
	if (!netdev)
		return -ENOMEM;
	SET_NETDEV_DEV(netdev, &pdev->dev);
	bp = netdev_priv(netdev);
	bp->netdev = netdev;
	bp->pdev = pdev;
	bp->ops = ops;
	mutex_init(&bp->link_lock);
	spin_lock_init(&bp->storm_lock);
	bp->storm_window = jiffies;
	INIT_DELAYED_WORK(&bp->slow_work, bpnet_slow_work);
	for (i = 0; i < BPNET_HOST_STATS; i++)
		atomic64_set(&bp->stats[i], 0);
	pci_set_drvdata(pdev, bp);
	netif_napi_add(netdev, &bp->napi, bpnet_poll);

	err = pcim_enable_device(pdev);
	if (err)
		goto err_free;
	err = dma_set_mask_and_coherent(&pdev->dev, BPNET_DMA_MASK);
	if (err) {
		dev_err(&pdev->dev, "no DMA below %#x, the agent's window onto host RAM\n",
			BPNET_HOST_WINDOW_BYTES);
		goto err_free;
	}
	pci_set_master(pdev);
	err = ops->start(bp);
	if (err)
		goto err_free;

	/* The MAC, if the agent is already there; the header is read again at set-up. */
	bpnet_read_header(bp, &header);
	if (!bpnet_parse_agent(bp, &header, &bp->agent, true)) {
		bp->agent_valid = true;
		/* A connection of an earlier host: its DMA must not reach this one's RAM. */
		if (header.agent_state == BPNET_AGENT_STATE_RUNNING ||
		    header.agent_state == BPNET_AGENT_STATE_BROKEN)
			bpnet_host_down(bp);
	}
	if (bp->agent_valid && is_valid_ether_addr(bp->agent.mac))
		eth_hw_addr_set(netdev, bp->agent.mac);
	else
		eth_hw_addr_random(netdev);

	netdev->netdev_ops = &bpnet_netdev_ops;
	netdev->ethtool_ops = &bpnet_ethtool_ops;
	netdev->min_mtu = BPNET_MTU_MIN;
	netdev->max_mtu = BPNET_MTU_MAX;
	netdev->hw_features = NETIF_F_HW_CSUM | NETIF_F_RXCSUM;
	netdev->features = netdev->hw_features;
	strscpy(netdev->name, "bp%d", sizeof(netdev->name));
	netif_carrier_off(netdev);
	err = register_netdev(netdev);
	if (err)
		goto err_stop;
	netdev_info(netdev, "%s agent at %s, MAC %pM%s\n", ops->name, pci_name(pdev),
		    netdev->dev_addr, bp->agent_valid ? "" : " (random: agent not ready)");
	return 0;

err_stop:
	bpnet_storm_reset(bp);
	ops->stop(bp);
	cancel_delayed_work_sync(&bp->slow_work);
err_free:
	free_netdev(netdev);
	return err;
}

static void bpnet_remove(struct pci_dev *pdev)
{
	struct bpnet *bp = pci_get_drvdata(pdev);
	struct net_device *netdev = bp->netdev;

	/* ndo_stop takes the link down: host_state DOWN, WORK, bounded wait, free. */
	unregister_netdev(netdev);
	/* free_irq wants the interrupts as they were requested. */
	bpnet_storm_reset(bp);
	bp->ops->stop(bp);
	cancel_delayed_work_sync(&bp->slow_work);
	mutex_lock(&bp->link_lock);
	if (bpnet_link_down(bp)) {
		/*
		 * The agent still holds buffers and may DMA into them: stop it
		 * mastering the bus and never give that memory back.
		 */
		pci_clear_master(pdev);
		netdev_err(netdev, "agent did not stop: its %zu-byte status block and buffers are left allocated\n",
			   bp->status_len);
	}
	mutex_unlock(&bp->link_lock);
	free_netdev(netdev);
}

static const struct pci_device_id bpnet_pci_ids[] = {
	/* ivshmem-doorbell: the virtual backplane. */
	{ PCI_VDEVICE(REDHAT_QUMRANET, 0x1110), (kernel_ulong_t)&bpnet_ivshmem_ops },
	/*
	 * MPC834x in agent mode. 0x0086 (MPC8343E) is confirmed; the others
	 * follow the public PCI ID list and are not checked on hardware.
	 */
	{ PCI_VDEVICE(FREESCALE, 0x0080), (kernel_ulong_t)&bpnet_mpc834x_ops },
	{ PCI_VDEVICE(FREESCALE, 0x0081), (kernel_ulong_t)&bpnet_mpc834x_ops },
	{ PCI_VDEVICE(FREESCALE, 0x0082), (kernel_ulong_t)&bpnet_mpc834x_ops },
	{ PCI_VDEVICE(FREESCALE, 0x0083), (kernel_ulong_t)&bpnet_mpc834x_ops },
	{ PCI_VDEVICE(FREESCALE, 0x0084), (kernel_ulong_t)&bpnet_mpc834x_ops },
	{ PCI_VDEVICE(FREESCALE, 0x0085), (kernel_ulong_t)&bpnet_mpc834x_ops },
	{ PCI_VDEVICE(FREESCALE, 0x0086), (kernel_ulong_t)&bpnet_mpc834x_ops },
	{ PCI_VDEVICE(FREESCALE, 0x0087), (kernel_ulong_t)&bpnet_mpc834x_ops },
	{ }
};
MODULE_DEVICE_TABLE(pci, bpnet_pci_ids);

/*
 * The shared region, read-only, as the PCI device's file bpnet_shared: what
 * bpctl reads the agent's header, counters and log ring from, even while its
 * network is down. A slow path of counted word reads, so it needs no mapping
 * of a BAR this driver holds (which the kernel may refuse user space).
 */
static ssize_t bpnet_shared_read(struct file *file, struct kobject *kobj,
				 struct bin_attribute *attr, char *buf,
				 loff_t off, size_t count)
{
	struct bpnet *bp = pci_get_drvdata(to_pci_dev(kobj_to_dev(kobj)));
	size_t done = 0;

	if (!bp || !bp->shared || off < 0 || off >= BPNET_SHARED_LEN)
		return 0;
	count = min_t(size_t, count, BPNET_SHARED_LEN - off);
	while (done < count) {
		u32 at = off + done;
		__le32 word = cpu_to_le32(bpnet_slow_read32(bp, at & ~3U));
		size_t skip = at & 3;
		size_t n = min_t(size_t, 4 - skip, count - done);

		memcpy(buf + done, (u8 *)&word + skip, n);
		done += n;
	}
	return count;
}
static BIN_ATTR_RO(bpnet_shared, BPNET_SHARED_LEN);

/*
 * The recovery area the agent published in its boot block, checked: whole
 * words, inside the shared region, clear of the header, doorbells and boot
 * block. 0 and the area, or < 0 when the agent is not in recovery.
 */
static int bpnet_recovery_area(struct bpnet *bp, u32 *at, u32 *capacity)
{
	u8 state = bpnet_read_header_byte(bp, BPNET_HEADER(agent_state));

	if (state != BPNET_AGENT_STATE_RECOVERY)
		return -EBUSY;
	*at = bpnet_slow_read32(bp, BPNET_BOOT(recovery_offset));
	*capacity = bpnet_slow_read32(bp, BPNET_BOOT(recovery_capacity));
	if (!*capacity || *at % 4 || *at < BPNET_BOOT_OFFSET + sizeof(struct bpnet_boot_block) ||
	    (u64)*at + *capacity > BPNET_SHARED_LEN) {
		bpnet_refuse(bp, "recovery area %#x + %#x outside the region or on the boot block",
			     *at, *capacity);
		return -EPROTO;
	}
	return 0;
}

/*
 * bpnet_recovery: an image for an agent in RECOVERY, written into the
 * recovery area at the file offset with posted writes (whole words where
 * aligned). Refused with -EBUSY in any other state; bpnet_control "boot <len>"
 * then asks the agent to start it.
 */
static ssize_t bpnet_recovery_write(struct file *file, struct kobject *kobj,
				    struct bin_attribute *attr, char *buf,
				    loff_t off, size_t count)
{
	struct bpnet *bp = pci_get_drvdata(to_pci_dev(kobj_to_dev(kobj)));
	size_t done = 0;
	u32 at, capacity;
	int err;

	if (!bp || !bp->shared)
		return -ENODEV;
	err = bpnet_recovery_area(bp, &at, &capacity);
	if (err)
		return err;
	if (off < 0 || off + count > capacity)
		return -EFBIG;
	while (done < count) {
		u32 to = at + off + done;

		if (!(to & 3) && count - done >= 4) {
			__le32 word;

			memcpy(&word, buf + done, 4);
			bpnet_write(bp, bp->shared + to, le32_to_cpu(word), 4);
			done += 4;
		} else {
			bpnet_write(bp, bp->shared + to, (u8)buf[done], 1);
			done++;
		}
	}
	return count;
}

/* The contract's recovery area; the agent's published capacity is checked at each write. */
static BIN_ATTR_WO(bpnet_recovery, BPNET_RECOVERY_LEN);

/*
 * bpnet_control: "reset", "recover" or "boot <len>". The boot block's host
 * fields in the contract's order (recovery_len, host_request, then a new
 * request_seq, all posted), then CONTROL. Works whatever the link does: the
 * way to an agent whose network is gone.
 */
static ssize_t bpnet_control_store(struct device *dev, struct device_attribute *attr,
				   const char *buf, size_t count)
{
	struct bpnet *bp = pci_get_drvdata(to_pci_dev(dev));
	u32 request, len = 0, at, capacity, seq;
	const char *name;
	int err;

	if (!bp || !bp->shared)
		return -ENODEV;
	if (sysfs_streq(buf, "reset")) {
		request = BPNET_HOST_REQUEST_RESET;
		name = "reset";
	} else if (sysfs_streq(buf, "recover")) {
		request = BPNET_HOST_REQUEST_ENTER_RECOVERY;
		name = "recover";
	} else if (!strncmp(buf, "boot ", 5)) {
		request = BPNET_HOST_REQUEST_BOOT_IMAGE;
		name = "boot";
		err = kstrtou32(skip_spaces(buf + 5), 0, &len);
		if (err)
			return err;
	} else {
		return -EINVAL;
	}
	mutex_lock(&bp->link_lock);
	if (request == BPNET_HOST_REQUEST_BOOT_IMAGE) {
		err = bpnet_recovery_area(bp, &at, &capacity);
		if (!err && (!len || len > capacity))
			err = -EFBIG;
		if (err)
			goto out;
	}
	seq = bpnet_slow_read32(bp, BPNET_BOOT(request_seq)) + 1;
	bpnet_write(bp, bp->shared + BPNET_BOOT(recovery_len), len, 4);
	bpnet_write(bp, bp->shared + BPNET_BOOT(host_request), request, 4);
	bpnet_write(bp, bp->shared + BPNET_BOOT(request_seq), seq, 4);
	bp->ops->control(bp);
	bpnet_count(bp, BPNET_STAT_doorbells, 1);
	netdev_info(bp->netdev, "control request %s (recovery_len %u) sent as request_seq %u\n",
		    name, len, seq);
	err = count;
out:
	mutex_unlock(&bp->link_lock);
	return err;
}
static DEVICE_ATTR_WO(bpnet_control);

static struct attribute *bpnet_attrs[] = {
	&dev_attr_bpnet_control.attr,
	NULL,
};

static struct bin_attribute *bpnet_bin_attrs[] = {
	&bin_attr_bpnet_shared,
	&bin_attr_bpnet_recovery,
	NULL,
};

static const struct attribute_group bpnet_group = {
	.attrs = bpnet_attrs,
	.bin_attrs = bpnet_bin_attrs,
};

static const struct attribute_group *bpnet_groups[] = {
	&bpnet_group,
	NULL,
};

static struct pci_driver bpnet_pci_driver = {
	.name = BPNET_DRV_NAME,
	.id_table = bpnet_pci_ids,
	.probe = bpnet_probe,
	.remove = bpnet_remove,
	.dev_groups = bpnet_groups,
};
module_pci_driver(bpnet_pci_driver);

MODULE_DESCRIPTION("bpnet: Ethernet over a PCI backplane (host side)");
MODULE_LICENSE("GPL");
