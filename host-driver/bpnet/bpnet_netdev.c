// SPDX-License-Identifier: GPL-2.0
/*
 * bpnet: Ethernet over a PCI backplane, host side: the network device, its
 * data path and the PCI driver.
 *
 * The host reads only its own RAM on the fast path: descriptors, producer and
 * event indexes and the doorbell are posted writes; completions and indexes
 * come from the status block the agent DMAs into host RAM. The agent's DMA
 * engine moves every payload byte: skbs are mapped, never copied. Everything
 * the agent wrote is checked before use; a violation breaks the link (logged,
 * counted, carrier off) and the link's slow path (bpnet_link.c, which owns the
 * handshake with the agent) re-initialises it. Open, stop and a new MTU only
 * ask the link for it.
 */

#include <linux/dma-mapping.h>
#include <linux/etherdevice.h>
#include <linux/io.h>
#include <linux/log2.h>
#include <linux/module.h>
#include <linux/rtnetlink.h>

#include "bpnet.h"

/*
 * Until the agent says how far its DMA reaches (set-up, bpnet_link_up), what
 * any agent reaches: an agent of contract minor version 1 had one window.
 */
#define BPNET_DMA_MASK		DMA_BIT_MASK(ilog2(BPNET_DMA_REACH_MINOR_1))
/*
 * An event index this far ahead of the consumer is never passed while a
 * ring's worth of entries is in flight: the agent's interrupts stay off until
 * the host asks again (host.rs FAR).
 */
#define BPNET_FAR		BIT(31)
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

/* The TX watchdog: a queue stopped this long rings the agent and wakes the slow path. */
#define BPNET_TX_TIMEOUT	(5 * HZ)

u64 bpnet_stat(struct bpnet *bp, enum bpnet_host_stat stat)
{
	u64 sum = 0;
	int cpu;

	for_each_possible_cpu(cpu) {
		const struct bpnet_pcpu_stats *s = per_cpu_ptr(bp->pcpu_stats, cpu);
		unsigned int start;
		u64 v;

		do {
			start = u64_stats_fetch_begin(&s->syncp);
			v = u64_stats_read(&s->v[stat]);
		} while (u64_stats_fetch_retry(&s->syncp, start));
		sum += v;
	}
	return sum;
}

static u32 bpnet_slot(const struct bpnet *bp, u32 index)
{
	return index & (bp->entries - 1);
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

void bpnet_notify(struct bpnet *bp)
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

/*
 * Four posted word writes. No barrier before the producer index that covers
 * the descriptor: iowrite32s reach the BAR in program order and PCI keeps
 * posted writes in order, so the agent never sees an index ahead of its
 * descriptors. That pairs with the agent's sync at the start of
 * SharedRegion::read (firmware/app/src/net/hw.rs), which orders the descriptor
 * reads of bpnet_ring::Engine::run after its read of tx_prod or rx_prod.
 */
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

/* Unmap a posted RX buffer: an skb's data, or a whole page (RX_MULTI_BUFFER). */
static void bpnet_rx_unmap(struct bpnet *bp, dma_addr_t addr)
{
	struct device *dev = &bp->pdev->dev;

	if (bp->rx_multi)
		dma_unmap_page(dev, addr, PAGE_SIZE, DMA_FROM_DEVICE);
	else
		dma_unmap_single(dev, addr, bp->buffer_len, DMA_FROM_DEVICE);
}

/*
 * Allocate and map one RX buffer into s: an skb that holds a whole frame, or
 * with RX_MULTI_BUFFER one order-0 page, mapped once, which ends up as a
 * fragment of the skb of the frame it receives (bpnet_rx_chain).
 */
static bool bpnet_rx_alloc(struct bpnet *bp, struct bpnet_rx_slot *s, gfp_t gfp)
{
	struct device *dev = &bp->pdev->dev;
	struct sk_buff *skb = NULL;
	struct page *page = NULL;
	dma_addr_t addr;

	if (bp->rx_multi) {
		page = alloc_page(gfp);
		if (!page)
			return false;
		addr = dma_map_page(dev, page, 0, PAGE_SIZE, DMA_FROM_DEVICE);
	} else {
		skb = __netdev_alloc_skb_ip_align(bp->netdev, bp->buffer_len, gfp);
		if (!skb)
			return false;
		addr = dma_map_single(dev, skb->data, bp->buffer_len, DMA_FROM_DEVICE);
	}
	if (dma_mapping_error(dev, addr))
		goto free;
	if (!bpnet_in_reach(bp, addr, bp->rx_buf_len)) {
		bpnet_rx_unmap(bp, addr);
		goto free;
	}
	s->skb = skb;
	s->page = page;
	s->addr = addr;
	return true;
free:
	if (page)
		__free_page(page);
	else
		dev_kfree_skb_any(skb);
	return false;
}

/*
 * Post empty buffers until rx_posted_max are posted, then move rx_prod once and
 * ring if the agent asked (not during set-up: WORK follows UP anyway). False
 * when an allocation or mapping failed and buffers are still missing.
 */
bool bpnet_fill_rx(struct bpnet *bp, gfp_t gfp, bool notify)
{
	u32 old = bp->rx_prod;

	while (bp->rx_prod - bp->rx_seen < bp->rx_posted_max) {
		struct bpnet_rx_slot *s = &bp->rx_slots[bpnet_slot(bp, bp->rx_prod)];

		if (!bpnet_rx_alloc(bp, s, gfp)) {
			bpnet_count(bp, BPNET_STAT_rx_alloc_failed, 1);
			break;
		}
		bpnet_write_descriptor(bp, bp->agent.rx_ring, bp->rx_prod, s->addr,
				       bp->rx_buf_len, 0);
		bp->rx_prod++;
	}
	if (bp->rx_prod == old)
		return bp->rx_prod - bp->rx_seen >= bp->rx_posted_max;
	/* After the descriptors (bpnet_write_descriptor). */
	bpnet_write(bp, bp->shared + BPNET_DOORBELL(rx_prod), bp->rx_prod, 4);
	if (notify) {
		/*
		 * rx_prod out before the agent's event is read. Pairs with
		 * the agent's side of the event index: bpnet_ring::Engine::submit
		 * publishes rx_prod_event in the status header of a chain, and
		 * Engine::run reads rx_prod again only after that chain ended,
		 * behind the sync in ChainDma::poll and the one opening
		 * SharedRegion::read. Either the agent sees the new rx_prod or
		 * this read sees its new event and rings.
		 */
		mb();
		bpnet_notify_if_wanted(bp, le32_to_cpu(READ_ONCE(bp->status->rx_prod_event)),
				       bp->rx_prod, old);
	}
	return bp->rx_prod - bp->rx_seen >= bp->rx_posted_max;
}

/*
 * RX refill in process context: NAPI allocates with GFP_ATOMIC, which fails
 * for the high-order buffers of a large MTU under memory pressure. NAPI is
 * stopped around the refill, as rx_prod is NAPI's; link_lock keeps set-up and
 * tear-down (which disable NAPI themselves) out.
 */
void bpnet_refill_work(struct work_struct *work)
{
	struct bpnet *bp = container_of(work, struct bpnet, refill_work);

	mutex_lock(&bp->link_lock);
	if (bp->state == BPNET_LINK_UP && !READ_ONCE(bp->broken)) {
		napi_disable(&bp->napi);
		bpnet_fill_rx(bp, GFP_KERNEL, true);
		napi_enable(&bp->napi);
		/* Completions that arrived while NAPI was off. */
		local_bh_disable();
		napi_schedule(&bp->napi);
		local_bh_enable();
	}
	mutex_unlock(&bp->link_lock);
}

/* Write tx_prod (deferred while the stack has more frames) and ring if asked. */
static void bpnet_publish_tx_prod(struct bpnet *bp)
{
	u32 old = bp->tx_prod_published;

	if (bp->tx_prod == old)
		return;
	/* After the descriptors (bpnet_write_descriptor). */
	bpnet_write(bp, bp->shared + BPNET_DOORBELL(tx_prod), bp->tx_prod, 4);
	bp->tx_prod_published = bp->tx_prod;
	/*
	 * tx_prod out before the agent's event is read: the pair of the mb()
	 * in bpnet_fill_rx, with tx_prod_event and tx_prod.
	 */
	mb();
	bpnet_notify_if_wanted(bp, le32_to_cpu(READ_ONCE(bp->status->tx_prod_event)),
			       bp->tx_prod, old);
}

static netdev_tx_t bpnet_start_xmit(struct sk_buff *skb, struct net_device *netdev)
{
	struct bpnet *bp = netdev_priv(netdev);
	struct netdev_queue *txq = netdev_get_tx_queue(netdev, 0);
	struct device *dev = &bp->pdev->dev;
	struct bpnet_tx_slot *s;
	u16 flags = 0;
	dma_addr_t addr;

	if (READ_ONCE(bp->state) != BPNET_LINK_UP || !READ_ONCE(bp->running) ||
	    READ_ONCE(bp->broken))
		goto drop;
	if (!skb->len || skb->len > bp->buffer_len || skb_linearize(skb))
		goto drop;
	if (skb->ip_summed == CHECKSUM_PARTIAL) {
		if (bp->features & BPNET_F_CSUM_OFFLOAD)
			flags |= BPNET_DESC_F_NEEDS_CSUM;
		else if (skb_checksum_help(skb))
			goto drop;
	}
	/*
	 * Cannot happen: the queue stops below when the ring fills and is woken
	 * only with room. Should it ever, the frame is dropped, not requeued.
	 */
	if (unlikely(bp->tx_prod - bp->tx_seen >= bp->entries)) {
		netif_stop_queue(netdev);
		goto drop;
	}
	addr = dma_map_single(dev, skb->data, skb->len, DMA_TO_DEVICE);
	if (dma_mapping_error(dev, addr))
		goto drop;
	if (!bpnet_in_reach(bp, addr, skb->len)) {
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
	/* BQL; true when tx_prod must go out now (no more frames, or stopped). */
	if (__netdev_tx_sent_queue(txq, s->len, netdev_xmit_more()))
		bpnet_publish_tx_prod(bp);
	return NETDEV_TX_OK;

drop:
	bpnet_count(bp, BPNET_STAT_tx_dropped, 1);
	dev_kfree_skb_any(skb);
	if (READ_ONCE(bp->state) == BPNET_LINK_UP && !netdev_xmit_more())
		bpnet_publish_tx_prod(bp);
	return NETDEV_TX_OK;
}

/* TX completions, under the TX queue lock so tx_prod and tx_seen are exact. */
static int bpnet_reap_tx(struct bpnet *bp, u32 tx_used, int budget)
{
	struct netdev_queue *txq = netdev_get_tx_queue(bp->netdev, 0);
	struct device *dev = &bp->pdev->dev;
	u32 n, in_flight, frames = 0, bytes = 0;

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
		frames++;
		bytes += s->len;
		napi_consume_skb(s->skb, budget);
		s->skb = NULL;
		bp->tx_seen++;
	}
	if (frames)
		bp->tx_timeout_run = 0;
	netdev_tx_completed_queue(txq, frames, bytes);
	if (netif_tx_queue_stopped(txq) && bp->running &&
	    bp->tx_prod - bp->tx_seen < bp->entries)
		netif_tx_wake_queue(txq);
	__netif_tx_unlock(txq);
	return 0;
}

/* The chain being assembled is given up; the rest of it, if any, is swallowed. */
static void bpnet_rx_chain_drop(struct bpnet *bp, bool more)
{
	if (bp->rx_skb)
		dev_kfree_skb_any(bp->rx_skb);
	bp->rx_skb = NULL;
	bp->rx_chain = 0;
	bp->rx_discard = more;
}

/*
 * RX_MULTI_BUFFER: take one buffer of a frame's chain (checked completion,
 * page unmapped) and return the frame once its last buffer is in, else NULL:
 * the frame waits for its next completion, across polls if it has not come
 * yet, and is never handed up in part. Headers are copied into the skb's
 * linear part (a small frame whole, its page freed), the rest of each page is
 * a fragment. Anything the contract bounds that the agent oversteps drops the
 * chain, counted, and swallows its remaining buffers.
 */
static struct sk_buff *bpnet_rx_chain(struct bpnet *bp, struct page *page, u16 flags, u32 len)
{
	bool more = flags & BPNET_COMPL_F_MORE;
	struct sk_buff *skb = bp->rx_skb;
	void *va = page_address(page);
	u32 hlen;

	if (bp->rx_discard) {
		__free_page(page);
		bp->rx_discard = more;
		return NULL;
	}
	if (flags & BPNET_COMPL_F_ERROR) {
		/* A refused buffer holds nothing, and ends a frame it breaks into. */
		__free_page(page);
		bpnet_count(bp, BPNET_STAT_rx_errors, 1);
		if (skb)
			bpnet_count(bp, BPNET_STAT_rx_bad_chains, 1);
		bpnet_rx_chain_drop(bp, more);
		return NULL;
	}
	bp->rx_chain++;
	if (len > PAGE_SIZE || bp->rx_chain > BPNET_RX_CHAIN_MAX ||
	    (skb ? skb->len : 0) + len > bp->buffer_len ||
	    (skb && skb_shinfo(skb)->nr_frags >= MAX_SKB_FRAGS)) {
		__free_page(page);
		bpnet_count(bp, BPNET_STAT_rx_bad_chains, 1);
		bpnet_rx_chain_drop(bp, more);
		return NULL;
	}
	if (!skb) {
		/* A runt eth_type_trans cannot parse. */
		if (len < ETH_HLEN) {
			__free_page(page);
			bpnet_count(bp, BPNET_STAT_rx_errors, 1);
			bpnet_rx_chain_drop(bp, more);
			return NULL;
		}
		skb = napi_alloc_skb(&bp->napi, BPNET_RX_COPY_LEN);
		if (!skb) {
			__free_page(page);
			bpnet_count(bp, BPNET_STAT_rx_dropped, 1);
			bpnet_rx_chain_drop(bp, more);
			return NULL;
		}
		bp->rx_chain_flags = flags & (BPNET_COMPL_F_CSUM_VALID | BPNET_COMPL_F_NEEDS_CSUM);
		if (!more && len <= BPNET_RX_COPY_LEN)
			hlen = len;
		else
			hlen = eth_get_headlen(bp->netdev, va, min(len, BPNET_RX_COPY_LEN));
		skb_put_data(skb, va, hlen);
		if (len > hlen)
			skb_add_rx_frag(skb, 0, page, hlen, len - hlen, PAGE_SIZE);
		else
			__free_page(page);
		bp->rx_skb = skb;
	} else if (len) {
		skb_add_rx_frag(skb, skb_shinfo(skb)->nr_frags, page, 0, len, PAGE_SIZE);
	} else {
		__free_page(page);
	}
	if (more)
		return NULL;
	bp->rx_skb = NULL;
	bp->rx_chain = 0;
	return skb;
}

/* A whole frame (len >= ETH_HLEN) with its checksum flags, to the stack. */
static void bpnet_rx_deliver(struct bpnet *bp, struct sk_buff *skb, u16 flags)
{
	bool offload = bp->features & BPNET_F_CSUM_OFFLOAD;
	u32 len = skb->len;

	skb->protocol = eth_type_trans(skb, bp->netdev);
	if ((flags & BPNET_COMPL_F_NEEDS_CSUM) && offload) {
		/*
		 * The agent left the TCP/UDP checksum out (virtio's
		 * NEEDS_CSUM). It is filled in here rather than left
		 * CHECKSUM_PARTIAL: packet sockets (tcpdump, DHCP
		 * servers) see the frame as it is in memory and must
		 * find a valid checksum. A read of the frame, no copy.
		 */
		skb_reset_network_header(skb);
		if (skb_checksum_setup(skb, true)) {
			bpnet_count(bp, BPNET_STAT_rx_errors, 1);
			dev_kfree_skb_any(skb);
			return;
		}
		if (skb_checksum_help(skb)) {
			bpnet_count(bp, BPNET_STAT_rx_dropped, 1);
			dev_kfree_skb_any(skb);
			return;
		}
		/* Computed just now over the bytes the stack will read. */
		if (bp->netdev->features & NETIF_F_RXCSUM)
			skb->ip_summed = CHECKSUM_UNNECESSARY;
	} else if ((flags & BPNET_COMPL_F_CSUM_VALID) && offload &&
		   (bp->netdev->features & NETIF_F_RXCSUM)) {
		skb->ip_summed = CHECKSUM_UNNECESSARY;
	}
	bpnet_count(bp, BPNET_STAT_rx_frames, 1);
	bpnet_count(bp, BPNET_STAT_rx_bytes, len);
	napi_gro_receive(&bp->napi, skb);
}

/* RX completions, at most budget of them; then refill. */
static int bpnet_reap_rx(struct bpnet *bp, u32 rx_used, int budget)
{
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
		struct page *page = s->page;

		/*
		 * Without RX_MULTI_BUFFER a completion that oversteps its
		 * buffer is a broken agent; with it the chain's bounds are
		 * checked buffer by buffer (bpnet_rx_chain).
		 */
		if ((flags & ~BPNET_COMPL_F_ALL) || id != (index & 0xffff) ||
		    (bp->rx_multi ? !page : (!skb || len > bp->buffer_len ||
					      (flags & BPNET_COMPL_F_MORE)))) {
			bpnet_broken(bp, "RX completion %u: id %u flags %#x len %u (posted %u, %u)",
				     index, id, flags, len, index & 0xffff, bp->rx_buf_len);
			return -EPROTO;
		}
		s->skb = NULL;
		s->page = NULL;
		bpnet_rx_unmap(bp, s->addr);
		bp->rx_seen++;
		if (bp->rx_multi) {
			skb = bpnet_rx_chain(bp, page, flags, len);
			if (skb)
				bpnet_rx_deliver(bp, skb, bp->rx_chain_flags);
			continue;
		}
		/* A refused buffer, or a runt eth_type_trans cannot parse. */
		if ((flags & BPNET_COMPL_F_ERROR) || len < ETH_HLEN) {
			bpnet_count(bp, BPNET_STAT_rx_errors, 1);
			dev_kfree_skb_any(skb);
			continue;
		}
		skb_put(skb, len);
		bpnet_rx_deliver(bp, skb, flags);
	}
	/* No high-order atomic allocation is relied on: process context retries. */
	if (!bpnet_fill_rx(bp, GFP_ATOMIC | __GFP_NOWARN, true))
		schedule_work(&bp->refill_work);
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

	/*
	 * Indexes first, then what they cover. Pairs with the order of the
	 * agent's chain, which the DMA controller performs in order and whose
	 * writes reach host RAM in order: frames, completions, then this
	 * header (bpnet_ring::Engine::submit), started behind the sync in
	 * ChainDma::submit that puts the staged completions in agent RAM.
	 */
	dma_rmb();
	if (cause && generation != bp->agent.generation) {
		bpnet_broken(bp, "status block of agent generation %u, connected to %u", generation,
			     bp->agent.generation);
		return -EPROTO;
	}
	if (!bp->running && cause) {
		/* The first status DMA: the agent took the host's fields and is RUNNING. */
		WRITE_ONCE(bp->running, true);
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

/*
 * TX completions only, for netpoll (budget 0): no RX, no state change. Before
 * the agent's first status block there is nothing to take.
 */
static void bpnet_reap_tx_only(struct bpnet *bp)
{
	u32 tx_used;

	if (READ_ONCE(bp->broken) || !READ_ONCE(bp->running))
		return;
	tx_used = le32_to_cpu(READ_ONCE(bp->status->tx_used));
	/* The index before the completions it covers (bpnet_reap). */
	dma_rmb();
	bpnet_reap_tx(bp, tx_used, 0);
}

/* Completions the host has not taken yet (host RAM only). */
bool bpnet_status_pending(struct bpnet *bp)
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

	/* netpoll: budget 0 reaps TX only and leaves NAPI scheduled. */
	if (!budget) {
		bpnet_reap_tx_only(bp);
		return 0;
	}
	if (READ_ONCE(bp->broken))
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
	/*
	 * The event write before the status block is looked at again. Pairs
	 * with the agent's bpnet_ring::Engine::complete, which reads
	 * tx_used_event and rx_used_event only after the chain that carried
	 * the new tx_used and rx_used ended (the sync in ChainDma::poll and the
	 * one opening SharedRegion::read): either it sees the new event and
	 * interrupts, or this look sees its indexes.
	 */
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

static int bpnet_open(struct net_device *netdev)
{
	struct bpnet *bp = netdev_priv(netdev);

	/* Carrier comes with the agent's first status block (bpnet_reap). */
	netif_carrier_off(netdev);
	netif_stop_queue(netdev);
	bpnet_link_open(bp);
	/* A set-up just now may have changed the negotiated features. */
	bpnet_link_sync_features(bp);
	return 0;
}

/* Does not wait for the agent: the slow path finishes the tear-down (bpnet_link.c). */
static int bpnet_stop(struct net_device *netdev)
{
	bpnet_link_close(netdev_priv(netdev));
	return 0;
}

static int bpnet_change_mtu(struct net_device *netdev, int new_mtu)
{
	return bpnet_link_change_mtu(netdev_priv(netdev), new_mtu);
}

/*
 * Checksum offload only when negotiated with the agent. The frames carry no
 * csum_start/csum_offset: the agent finds the TCP/UDP checksum by parsing
 * IPv4 and IPv6, hence NETIF_F_IP_CSUM | NETIF_F_IPV6_CSUM, not HW_CSUM.
 */
static netdev_features_t bpnet_fix_features(struct net_device *netdev,
					    netdev_features_t features)
{
	struct bpnet *bp = netdev_priv(netdev);

	if (!READ_ONCE(bp->csum_offload))
		features &= ~(NETIF_F_CSUM_MASK | NETIF_F_RXCSUM);
	return features;
}

/*
 * The TX queue stayed stopped past the watchdog: the agent may have missed a
 * doorbell (a posted write, or a stale event index). Ring it again; the slow
 * path re-rings while nothing moves and resets the link if that goes on.
 */
static void bpnet_tx_timeout(struct net_device *netdev, unsigned int txqueue)
{
	struct bpnet *bp = netdev_priv(netdev);

	bpnet_count(bp, BPNET_STAT_tx_timeouts, 1);
	netdev_warn(netdev, "TX queue stopped for %u ms: tx_prod %u, tx_seen %u; ringing the agent\n",
		    jiffies_to_msecs(BPNET_TX_TIMEOUT), bp->tx_prod, bp->tx_seen);
	if (READ_ONCE(bp->state) == BPNET_LINK_UP)
		bpnet_notify(bp);
	/* Still stopped at the next timeout, with no completion since: reset the link. */
	if (++bp->tx_timeout_run > 1)
		WRITE_ONCE(bp->tx_stalled, true);
	bpnet_link_event(bp);
}

static void bpnet_get_stats64(struct net_device *netdev, struct rtnl_link_stats64 *stats)
{
	struct bpnet *bp = netdev_priv(netdev);

	stats->tx_packets = bpnet_stat(bp, BPNET_STAT_tx_frames);
	stats->tx_bytes = bpnet_stat(bp, BPNET_STAT_tx_bytes);
	stats->tx_errors = bpnet_stat(bp, BPNET_STAT_tx_errors);
	stats->tx_dropped = bpnet_stat(bp, BPNET_STAT_tx_dropped);
	stats->rx_packets = bpnet_stat(bp, BPNET_STAT_rx_frames);
	stats->rx_bytes = bpnet_stat(bp, BPNET_STAT_rx_bytes);
	stats->rx_errors = bpnet_stat(bp, BPNET_STAT_rx_errors);
	stats->rx_dropped = bpnet_stat(bp, BPNET_STAT_rx_dropped);
}

/* The agent's devlink port: ip -d link and phys_port_name (the slot) come from it. */
static struct devlink_port *bpnet_get_devlink_port(struct net_device *netdev)
{
	struct bpnet *bp = netdev_priv(netdev);

	return READ_ONCE(bp->dl_port_registered) ? &bp->dl_port : NULL;
}

static const struct net_device_ops bpnet_netdev_ops = {
	.ndo_open = bpnet_open,
	.ndo_stop = bpnet_stop,
	.ndo_start_xmit = bpnet_start_xmit,
	.ndo_change_mtu = bpnet_change_mtu,
	.ndo_fix_features = bpnet_fix_features,
	.ndo_tx_timeout = bpnet_tx_timeout,
	.ndo_get_stats64 = bpnet_get_stats64,
	.ndo_set_mac_address = eth_mac_addr,
	.ndo_validate_addr = eth_validate_addr,
	.ndo_get_devlink_port = bpnet_get_devlink_port,
};

static int bpnet_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	const struct bpnet_bus_ops *ops = (const struct bpnet_bus_ops *)id->driver_data;
	struct net_device *netdev;
	struct bpnet *bp;
	int err;

	BUILD_BUG_ON_NOT_POWER_OF_2(BPNET_DMA_REACH_MINOR_1);
	netdev = alloc_etherdev(sizeof(*bp));
	if (!netdev)
		return -ENOMEM;
	SET_NETDEV_DEV(netdev, &pdev->dev);
	bp = netdev_priv(netdev);
	bp->netdev = netdev;
	bp->pdev = pdev;
	bp->ops = ops;
	bpnet_link_init(bp);
	bp->pcpu_stats = netdev_alloc_pcpu_stats(struct bpnet_pcpu_stats);
	if (!bp->pcpu_stats) {
		free_netdev(netdev);
		return -ENOMEM;
	}
	/* Named after the device: /proc/interrupts tells the agents apart. */
	snprintf(bp->irq_names[BPNET_IRQ_ALL], sizeof(bp->irq_names[0]), "%s-%s",
		 BPNET_DRV_NAME, pci_name(pdev));
	snprintf(bp->irq_names[BPNET_IRQ_STATUS], sizeof(bp->irq_names[0]), "%s-%s-status",
		 BPNET_DRV_NAME, pci_name(pdev));
	snprintf(bp->irq_names[BPNET_IRQ_LINK], sizeof(bp->irq_names[0]), "%s-%s-link",
		 BPNET_DRV_NAME, pci_name(pdev));
	pci_set_drvdata(pdev, bp);
	netif_napi_add(netdev, &bp->napi, bpnet_poll);

	err = pcim_enable_device(pdev);
	if (err)
		goto err_free;
	err = dma_set_mask_and_coherent(&pdev->dev, BPNET_DMA_MASK);
	if (err) {
		dev_err(&pdev->dev, "no DMA below %#x, what every agent reaches of host RAM\n",
			BPNET_DMA_REACH_MINOR_1);
		goto err_free;
	}
	/* Bus mastering waits for an agent that shows READY (bpnet_link_up). */
	err = ops->start(bp);
	if (err)
		goto err_free;

	/*
	 * Only a bpnet agent: a device without the contract's magic (another
	 * ivshmem user, a board running something else) is left alone. The
	 * MAC too; the header is read again at set-up.
	 */
	err = bpnet_link_probe(bp);
	if (err)
		goto err_stop;
	if (bp->agent_valid && is_valid_ether_addr(bp->agent.mac))
		eth_hw_addr_set(netdev, bp->agent.mac);
	else
		eth_hw_addr_random(netdev);

	netdev->netdev_ops = &bpnet_netdev_ops;
	netdev->ethtool_ops = &bpnet_ethtool_ops;
	netdev->min_mtu = BPNET_MTU_MIN;
	netdev->max_mtu = BPNET_MTU_MAX;
	netdev->hw_features = NETIF_F_IP_CSUM | NETIF_F_IPV6_CSUM | NETIF_F_RXCSUM;
	/*
	 * RX buffers hold MTU + 14 bytes and the agent's stack knows no 802.1Q:
	 * no VLAN devices on top.
	 */
	netdev->features = netdev->hw_features | NETIF_F_VLAN_CHALLENGED;
	netdev->watchdog_timeo = BPNET_TX_TIMEOUT;
	/* The kernel's default template; udev policy may rename (README). */
	strscpy(netdev->name, "bp%d", sizeof(netdev->name));
	netif_carrier_off(netdev);
	/* Features follow bpnet_fix_features: what probe's header look offers. */
	err = bpnet_devlink_probe(bp);
	if (err)
		goto err_stop;
	err = register_netdev(netdev);
	if (err)
		goto err_devlink;
	bpnet_devlink_register(bp);
	netdev_info(netdev, "%s agent at %s, MAC %pM%s\n", ops->name, pci_name(pdev),
		    netdev->dev_addr, bp->agent_valid ? "" : " (random: agent not ready)");
	return 0;

err_devlink:
	bpnet_devlink_free(bp);
err_stop:
	bpnet_storm_reset(bp);
	ops->stop(bp);
	bpnet_link_free(bp);
err_free:
	free_percpu(bp->pcpu_stats);
	free_netdev(netdev);
	return err;
}

static void bpnet_remove(struct pci_dev *pdev)
{
	struct bpnet *bp = pci_get_drvdata(pdev);
	struct net_device *netdev = bp->netdev;

	bpnet_devlink_unregister(bp);
	/* ndo_stop takes the link down: host_state DOWN, WORK, bounded wait, free. */
	unregister_netdev(netdev);
	/* free_irq wants the interrupts as they were requested. */
	bpnet_storm_reset(bp);
	bp->ops->stop(bp);
	bpnet_link_free(bp);
	bpnet_devlink_free(bp);
	free_percpu(bp->pcpu_stats);
	free_netdev(netdev);
}

/*
 * Reboot, kexec, power-off: the next owner of host RAM knows nothing of the
 * buffers posted to the agents, so every link goes down and each agent stops
 * its DMA (or loses bus mastering) before this returns.
 */
static void bpnet_shutdown(struct pci_dev *pdev)
{
	struct bpnet *bp = pci_get_drvdata(pdev);

	rtnl_lock();
	netif_device_detach(bp->netdev);
	rtnl_unlock();
	bpnet_link_shutdown(bp);
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

static struct pci_driver bpnet_pci_driver = {
	.name = BPNET_DRV_NAME,
	.id_table = bpnet_pci_ids,
	.probe = bpnet_probe,
	.remove = bpnet_remove,
	.shutdown = bpnet_shutdown,
	.dev_groups = bpnet_groups,
};
module_pci_driver(bpnet_pci_driver);

MODULE_DESCRIPTION("bpnet: Ethernet over a PCI backplane (host side)");
MODULE_LICENSE("GPL");
