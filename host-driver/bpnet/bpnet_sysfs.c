// SPDX-License-Identifier: GPL-2.0
/*
 * bpnet: the PCI device's sysfs files, the way to an agent whatever its
 * network does: bpnet_shared (the shared region, read-only), bpnet_recovery
 * (an image for an agent in RECOVERY) and bpnet_control (requests through the
 * boot block).
 */

#include <linux/pci.h>
#include <linux/string.h>
#include <linux/sysfs.h>

#include "bpnet.h"

/*
 * The shared region, read-only, as the PCI device's file bpnet_shared: what
 * bpctl reads the agent's header, counters and log ring from, even while its
 * network is down. A slow path of counted word reads, so it needs no mapping
 * of a BAR this driver holds (which the kernel may refuse user space).
 * Root's only (0400, like a PCI resource file): it holds the agent's log and
 * counters, and each word is a bus read of about a microsecond that the data
 * path waits behind, so one read() moves at most BPNET_SHARED_READ_MAX bytes
 * (a short read; the caller reads on) and yields the CPU after it.
 */
#define BPNET_SHARED_READ_MAX	4096U

static ssize_t bpnet_shared_read(struct file *file, struct kobject *kobj,
				 struct bin_attribute *attr, char *buf,
				 loff_t off, size_t count)
{
	struct bpnet *bp = pci_get_drvdata(to_pci_dev(kobj_to_dev(kobj)));
	size_t done = 0;

	if (!bp || !bp->shared || off < 0 || off >= BPNET_SHARED_LEN)
		return 0;
	count = min3(count, (size_t)(BPNET_SHARED_LEN - off), (size_t)BPNET_SHARED_READ_MAX);
	while (done < count) {
		u32 at = off + done;
		__le32 word = cpu_to_le32(bpnet_slow_read32(bp, at & ~3U));
		size_t skip = at & 3;
		size_t n = min_t(size_t, 4 - skip, count - done);

		memcpy(buf + done, (u8 *)&word + skip, n);
		done += n;
	}
	cond_resched();
	return count;
}
static BIN_ATTR_ADMIN_RO(bpnet_shared, BPNET_SHARED_LEN);

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
	seq = bpnet_send_request(bp, request, len);
	netdev_info(bp->netdev, "control request %s (recovery_len %u) sent as request_seq %u\n",
		    name, len, seq);
	err = count;
out:
	mutex_unlock(&bp->link_lock);
	return err;
}
static DEVICE_ATTR_WO(bpnet_control);

/*
 * bpnet_heartbeat: "<alive|unresponsive> <seconds since the beat last moved>
 * <beat>", or "unknown" while no heartbeat is judged (link not up, an agent of
 * minor version 2, or one that has not beaten yet). The slow path's view, read
 * without link_lock: no bus access.
 */
static ssize_t bpnet_heartbeat_show(struct device *dev, struct device_attribute *attr,
				    char *buf)
{
	struct bpnet *bp = pci_get_drvdata(to_pci_dev(dev));
	unsigned long moved;

	if (!bp || READ_ONCE(bp->state) != BPNET_LINK_UP || !READ_ONCE(bp->heartbeat_known))
		return sysfs_emit(buf, "unknown\n");
	moved = READ_ONCE(bp->heartbeat_moved);
	return sysfs_emit(buf, "%s %u %u\n",
			  READ_ONCE(bp->unresponsive) ? "unresponsive" : "alive",
			  jiffies_to_msecs(jiffies - moved) / 1000,
			  READ_ONCE(bp->heartbeat));
}
static DEVICE_ATTR_RO(bpnet_heartbeat);

static struct attribute *bpnet_attrs[] = {
	&dev_attr_bpnet_control.attr,
	&dev_attr_bpnet_heartbeat.attr,
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

const struct attribute_group *bpnet_groups[] = {
	&bpnet_group,
	NULL,
};
