// SPDX-License-Identifier: GPL-2.0
/*
 * bpnet ethtool: driver and firmware identification, and the statistics:
 * the agent's counters (read through the BAR, a slow path) then the module's.
 */

#include <linux/ethtool.h>

#include "bpnet.h"

/* The agent's counters by slot; a slot the contract leaves unnamed reads "reserved". */
static const char * const bpnet_agent_names[] = BPNET_COUNTER_NAMES;

static const char * const bpnet_host_names[] = {
	[BPNET_STAT_host_bar_reads] = "host_bar_reads",
	[BPNET_STAT_host_bar_reads_slow_path] = "host_bar_reads_slow_path",
	[BPNET_STAT_host_bar_writes] = "host_bar_writes",
	[BPNET_STAT_interrupts] = "interrupts",
	[BPNET_STAT_doorbells] = "doorbells",
	[BPNET_STAT_tx_frames] = "tx_frames",
	[BPNET_STAT_tx_bytes] = "tx_bytes",
	[BPNET_STAT_tx_errors] = "tx_errors",
	[BPNET_STAT_tx_dropped] = "tx_dropped",
	[BPNET_STAT_rx_frames] = "rx_frames",
	[BPNET_STAT_rx_bytes] = "rx_bytes",
	[BPNET_STAT_rx_errors] = "rx_errors",
	[BPNET_STAT_rx_dropped] = "rx_dropped",
	[BPNET_STAT_rx_bad_chains] = "rx_bad_chains",
	[BPNET_STAT_contract_errors] = "contract_errors",
	[BPNET_STAT_link_resets] = "link_resets",
	[BPNET_STAT_rx_alloc_failed] = "rx_alloc_failed",
	[BPNET_STAT_doorbells_resent] = "doorbells_resent",
	[BPNET_STAT_tx_timeouts] = "tx_timeouts",
	[BPNET_STAT_heartbeat_lost] = "heartbeat_lost",
	[BPNET_STAT_reset_requests] = "reset_requests",
};

static void bpnet_get_drvinfo(struct net_device *netdev, struct ethtool_drvinfo *info)
{
	struct bpnet *bp = netdev_priv(netdev);
	u32 v;

	strscpy(info->driver, BPNET_DRV_NAME, sizeof(info->driver));
	/*
	 * The bus personality in the driver's version field: which side of
	 * the driver runs this device (mpc834x, a real board; ivshmem, the
	 * virtual backplane). The slot is bus_info, the agent's firmware
	 * firmware-version.
	 */
	strscpy(info->version, bp->ops->name, sizeof(info->version));
	strscpy(info->bus_info, pci_name(bp->pdev), sizeof(info->bus_info));
	mutex_lock(&bp->link_lock);
	v = bp->agent.firmware_version;
	if (bp->agent_valid)
		snprintf(info->fw_version, sizeof(info->fw_version), "%u.%u.%u",
			 (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff);
	mutex_unlock(&bp->link_lock);
}

static int bpnet_get_sset_count(struct net_device *netdev, int sset)
{
	if (sset != ETH_SS_STATS)
		return -EOPNOTSUPP;
	return ARRAY_SIZE(bpnet_agent_names) + ARRAY_SIZE(bpnet_host_names);
}

static void bpnet_get_strings(struct net_device *netdev, u32 sset, u8 *data)
{
	unsigned int i;

	if (sset != ETH_SS_STATS)
		return;
	for (i = 0; i < ARRAY_SIZE(bpnet_agent_names); i++)
		ethtool_sprintf(&data, "agent_%s", bpnet_agent_names[i] ?: "reserved");
	for (i = 0; i < ARRAY_SIZE(bpnet_host_names); i++)
		ethtool_sprintf(&data, "%s", bpnet_host_names[i]);
}

static void bpnet_get_ethtool_stats(struct net_device *netdev, struct ethtool_stats *stats,
				    u64 *data)
{
	struct bpnet *bp = netdev_priv(netdev);
	/*
	 * No link_lock: a monitoring daemon's ethtool -S runs under rtnl and
	 * must not wait behind a set-up. Every counters offset ever stored was
	 * checked to lie inside the shared region; agent_valid is set after.
	 */
	bool valid = smp_load_acquire(&bp->agent_valid);
	u32 counters = READ_ONCE(bp->agent.counters);
	unsigned int i;

	BUILD_BUG_ON(ARRAY_SIZE(bpnet_agent_names) > BPNET_COUNTER_SLOTS);
	BUILD_BUG_ON(ARRAY_SIZE(bpnet_host_names) != BPNET_HOST_STATS);
	for (i = 0; i < ARRAY_SIZE(bpnet_agent_names); i++)
		*data++ = valid ? bpnet_slow_read32(bp, counters + 4 * i) : 0;
	for (i = 0; i < BPNET_HOST_STATS; i++)
		*data++ = bpnet_stat(bp, i);
}

/*
 * The agent sets the ring size; the module posts the whole ring with
 * RX_MULTI_BUFFER (page buffers), and without it fewer RX buffers at large
 * MTUs (BPNET_RX_POSTED_BYTES). Zero until the link has come up once.
 */
static void bpnet_get_ringparam(struct net_device *netdev, struct ethtool_ringparam *ring,
				struct kernel_ethtool_ringparam *kernel_ring,
				struct netlink_ext_ack *extack)
{
	struct bpnet *bp = netdev_priv(netdev);

	mutex_lock(&bp->link_lock);
	ring->rx_max_pending = bp->entries;
	ring->tx_max_pending = bp->entries;
	ring->rx_pending = bp->rx_posted_max;
	ring->tx_pending = bp->entries;
	mutex_unlock(&bp->link_lock);
}

const struct ethtool_ops bpnet_ethtool_ops = {
	.get_drvinfo = bpnet_get_drvinfo,
	.get_link = ethtool_op_get_link,
	.get_sset_count = bpnet_get_sset_count,
	.get_strings = bpnet_get_strings,
	.get_ethtool_stats = bpnet_get_ethtool_stats,
	.get_ringparam = bpnet_get_ringparam,
};
