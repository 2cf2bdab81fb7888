// SPDX-License-Identifier: GPL-2.0
/*
 * bpnet: one devlink instance per agent, with a port for its netdev, info
 * and a health reporter.
 *
 * The port's number is the agent's chassis slot from its identity record (the
 * board info block, contract minor 4), so phys_port_name is "p<slot>" for a
 * udev rule to name interfaces by; without a slot the port has no attributes.
 * Attributes are fixed at registration and the firmware publishes the block
 * only when it starts (after the boot stage), so the port is registered when
 * the link first comes up.
 * info reads the boot block and the board info block through the BAR when
 * asked. The health reporter "agent" reports what the slow path found (a fault
 * record, BROKEN, no progress with work pending, a contract violation or an
 * interrupt storm); its dump is the fault record kept by the host and the log
 * ring's header and undecoded tail, which bpctl logs --dump decodes with the
 * firmware ELF; recover asks the agent to reset through the boot block.
 * Reports are made outside link_lock, since recover takes it.
 */

#include <linux/string.h>
#include <net/devlink.h>

#include "bpnet.h"

/* Bytes of the log ring's tail a dump carries: the last few hundred lines. */
#define BPNET_DUMP_LOG_BYTES	4096U
/* The least time between automatic recoveries (ms): a board that faults at once again is left. */
#define BPNET_HEALTH_GRACE_MS	20000

struct bpnet_devlink {
	struct bpnet *bp;
};

static struct bpnet *bpnet_from_devlink(struct devlink *devlink)
{
	return ((struct bpnet_devlink *)devlink_priv(devlink))->bp;
}

/* A version word as "major.minor.patch". */
static void bpnet_version_str(char *buf, size_t len, u32 v)
{
	snprintf(buf, len, "%u.%u.%u", (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff);
}

/* Read the board info block's identity half (minor 4) and check it as the contract does. */
int bpnet_read_board(struct bpnet *bp, struct bpnet_board *board)
{
	u32 w;

	memset(board, 0, sizeof(*board));
	board->slot = BPNET_BOARD_SLOT_UNKNOWN;
	if (!bp->agent_valid || bp->agent.version_minor < BPNET_VERSION_MINOR_BOARD_INFO)
		return -EOPNOTSUPP;
	board->serial = bpnet_slow_read32(bp, BPNET_BOARD_INFO(serial));
	w = bpnet_slow_read32(bp, BPNET_BOARD_INFO(slot));
	board->spridr = bpnet_slow_read32(bp, BPNET_BOARD_INFO(spridr));
	board->pvr = bpnet_slow_read32(bp, BPNET_BOARD_INFO(pvr));
	board->boot_stage_version = bpnet_slow_read32(bp, BPNET_BOARD_INFO(boot_stage_version));
	board->slot = w & 0xff;
	board->board = (w >> 8) & 0xff;
	if (board->serial > BPNET_BOARD_SERIAL_MAX ||
	    (board->slot >= BPNET_BOARD_SLOTS && board->slot != BPNET_BOARD_SLOT_UNKNOWN)) {
		bpnet_count(bp, BPNET_STAT_contract_errors, 1);
		if (!bp->bogus_logged)
			netdev_warn(bp->netdev, "identity ignored: serial %#x slot %u out of range (counted in contract_errors, said once)\n",
				    board->serial, board->slot);
		bp->bogus_logged = true;
		memset(board, 0, sizeof(*board));
		board->slot = BPNET_BOARD_SLOT_UNKNOWN;
		return -EPROTO;
	}
	return 0;
}

/* Which slot the boot stage takes next: one written and on trial first, else the confirmed one. */
static int bpnet_next_slot(const u8 *states, u8 running)
{
	int i;

	for (i = 0; i < 2; i++)
		if (states[i] == BPNET_SLOT_STATE_WRITTEN)
			return i;
	if (running < 2 && states[running] == BPNET_SLOT_STATE_CONFIRMED)
		return running;
	for (i = 0; i < 2; i++)
		if (states[i] == BPNET_SLOT_STATE_CONFIRMED)
			return i;
	return -1;
}

static int bpnet_info_get(struct devlink *devlink, struct devlink_info_req *req,
			  struct netlink_ext_ack *extack)
{
	struct bpnet *bp = bpnet_from_devlink(devlink);
	static const char * const slot_names[] = { "fw.slot_a", "fw.slot_b" };
	struct bpnet_board board;
	char buf[32];
	u32 versions[2], image, w;
	u8 states[2], boot_slot;
	int err, i, next;

	err = devlink_info_driver_name_put(req, BPNET_DRV_NAME);
	if (err)
		return err;
	if (!bpnet_read_board(bp, &board)) {
		if (board.serial) {
			snprintf(buf, sizeof(buf), "%u", board.serial);
			err = devlink_info_serial_number_put(req, buf);
			if (err)
				return err;
		}
		snprintf(buf, sizeof(buf), "%04x", board.spridr >> 16);
		err = devlink_info_version_fixed_put(req, "asic.id", buf);
		if (err)
			return err;
		snprintf(buf, sizeof(buf), "%04x", board.spridr & 0xffff);
		err = devlink_info_version_fixed_put(req, "asic.rev", buf);
		if (err)
			return err;
		if (board.board == BPNET_BOARD_MPC8349EMDS)
			strscpy(buf, "MPC8349EMDS", sizeof(buf));
		else
			snprintf(buf, sizeof(buf), "%u", board.board);
		err = devlink_info_version_fixed_put(req, "board.id", buf);
		if (err)
			return err;
		if (board.boot_stage_version) {
			bpnet_version_str(buf, sizeof(buf), board.boot_stage_version);
			err = devlink_info_version_running_put(req, "fw.bootloader", buf);
			if (err)
				return err;
		}
	}
	/* The boot block is every agent's, any minor: the running image and the slots. */
	image = bpnet_slow_read32(bp, BPNET_BOOT(image_version));
	if (image) {
		bpnet_version_str(buf, sizeof(buf), image);
		err = devlink_info_version_running_put(req, "fw", buf);
		if (err)
			return err;
	}
	versions[0] = bpnet_slow_read32(bp, BPNET_BOOT(slot_a_version));
	versions[1] = bpnet_slow_read32(bp, BPNET_BOOT(slot_b_version));
	w = bpnet_slow_read32(bp, BPNET_BOOT(slot_a_state));
	states[0] = w & 0xff;
	states[1] = (w >> 8) & 0xff;
	boot_slot = bpnet_slow_read32(bp, BPNET_BOOT(boot_source)) >> 8;
	/*
	 * A slot's version is 0 when the boot-state record does not know it
	 * (an image provisioned before the record existed): not shown.
	 */
	for (i = 0; i < 2; i++) {
		if (!versions[i] || (states[i] != BPNET_SLOT_STATE_WRITTEN &&
				     states[i] != BPNET_SLOT_STATE_CONFIRMED))
			continue;
		bpnet_version_str(buf, sizeof(buf), versions[i]);
		err = devlink_info_version_stored_put(req, slot_names[i], buf);
		if (err)
			return err;
	}
	next = bpnet_next_slot(states, boot_slot);
	if (next >= 0) {
		if (versions[next]) {
			bpnet_version_str(buf, sizeof(buf), versions[next]);
			err = devlink_info_version_stored_put(req, "fw", buf);
			if (err)
				return err;
		}
		err = devlink_info_version_stored_put(req, "fw.next_slot", next ? "B" : "A");
	}
	return err;
}

static const struct devlink_ops bpnet_devlink_ops = {
	.info_get = bpnet_info_get,
};

static int bpnet_health_recover(struct devlink_health_reporter *reporter, void *ctx,
				struct netlink_ext_ack *extack)
{
	struct bpnet *bp = devlink_health_reporter_priv(reporter);
	u32 seq;

	/*
	 * A report whose cure is the link's own re-initialisation (a contract
	 * violation, a storm, BROKEN without a fault) is recovered by the slow
	 * path already; an operator's recover (no context) always resets.
	 */
	if (ctx && *(const enum bpnet_recovery *)ctx == BPNET_RECOVER_LINK)
		return 0;

	mutex_lock(&bp->link_lock);
	seq = bpnet_send_request(bp, BPNET_HOST_REQUEST_RESET, 0);
	mutex_unlock(&bp->link_lock);
	netdev_info(bp->netdev, "health: asked the agent to reset (request_seq %u)\n", seq);
	return 0;
}

static int bpnet_fmsg_fault(struct devlink_fmsg *fmsg, const struct bpnet_fault *f)
{
	int err;

	err = devlink_fmsg_pair_nest_start(fmsg, "fault");
	if (err)
		return err;
	err = devlink_fmsg_obj_nest_start(fmsg);
	if (err)
		return err;
	err = devlink_fmsg_u32_pair_put(fmsg, "seq", f->seq);
	if (!err)
		err = devlink_fmsg_u32_pair_put(fmsg, "vector", f->vector);
	if (!err)
		err = devlink_fmsg_u32_pair_put(fmsg, "srr0", f->srr0);
	if (!err)
		err = devlink_fmsg_u32_pair_put(fmsg, "srr1", f->srr1);
	if (!err)
		err = devlink_fmsg_u32_pair_put(fmsg, "dar", f->dar);
	if (!err)
		err = devlink_fmsg_u32_pair_put(fmsg, "dsisr", f->dsisr);
	if (!err)
		err = devlink_fmsg_u32_pair_put(fmsg, "generation", f->generation);
	if (!err)
		err = devlink_fmsg_u32_pair_put(fmsg, "uptime_s", f->uptime_s);
	if (err)
		return err;
	err = devlink_fmsg_obj_nest_end(fmsg);
	if (err)
		return err;
	return devlink_fmsg_pair_nest_end(fmsg);
}

static int bpnet_health_diagnose(struct devlink_health_reporter *reporter,
				 struct devlink_fmsg *fmsg, struct netlink_ext_ack *extack)
{
	struct bpnet *bp = devlink_health_reporter_priv(reporter);
	u8 state = bpnet_read_header_byte(bp, BPNET_HEADER(agent_state));
	u32 generation = bpnet_slow_read32(bp, BPNET_HEADER(agent_generation));
	int err;

	err = devlink_fmsg_u32_pair_put(fmsg, "agent_state", state);
	if (!err)
		err = devlink_fmsg_u32_pair_put(fmsg, "agent_generation", generation);
	if (!err)
		err = devlink_fmsg_u32_pair_put(fmsg, "heartbeat", READ_ONCE(bp->heartbeat));
	if (!err)
		err = devlink_fmsg_bool_pair_put(fmsg, "unresponsive", READ_ONCE(bp->unresponsive));
	if (!err)
		err = devlink_fmsg_u64_pair_put(fmsg, "contract_errors",
						bpnet_stat(bp, BPNET_STAT_contract_errors));
	if (!err)
		err = devlink_fmsg_u64_pair_put(fmsg, "link_resets",
						bpnet_stat(bp, BPNET_STAT_link_resets));
	if (!err)
		err = devlink_fmsg_u64_pair_put(fmsg, "heartbeat_lost",
						bpnet_stat(bp, BPNET_STAT_heartbeat_lost));
	if (!err)
		err = devlink_fmsg_u64_pair_put(fmsg, "doorbells_resent",
						bpnet_stat(bp, BPNET_STAT_doorbells_resent));
	if (!err && bp->fault_rec.seq)
		err = bpnet_fmsg_fault(fmsg, &bp->fault_rec);
	return err;
}

/*
 * The log ring as the agent left it: its header (magic, capacity, head,
 * generation) and then the bytes before head, at most BPNET_DUMP_LOG_BYTES,
 * oldest first (read as whole words up to head rounded up, the bytes past
 * head left out): the tail ends at the header's head. Only the header's
 * capacity sizes anything, and only once checked against the region.
 */
static int bpnet_health_dump(struct devlink_health_reporter *reporter,
			     struct devlink_fmsg *fmsg, void *ctx,
			     struct netlink_ext_ack *extack)
{
	struct bpnet *bp = devlink_health_reporter_priv(reporter);
	u32 ring = BPNET_LOG_RING_OFFSET, hdr[4], cap, head, head_up, n, i;
	__le32 *tail;
	int err;

	if (bp->fault_rec.seq) {
		err = bpnet_fmsg_fault(fmsg, &bp->fault_rec);
		if (err)
			return err;
	}
	for (i = 0; i < 4; i++)
		hdr[i] = bpnet_slow_read32(bp, ring + 4 * i);
	cap = hdr[1];
	head = hdr[2];
	if (hdr[0] != BPNET_LOG_RING_MAGIC || cap < 64 || !is_power_of_2(cap) ||
	    cap > BPNET_LOG_RING_LEN - BPNET_LOG_RING_HEADER_LEN)
		return devlink_fmsg_string_pair_put(fmsg, "log", "no log ring");
	head_up = round_up(head, 4);
	n = min3(cap, head_up, BPNET_DUMP_LOG_BYTES) & ~3U;
	tail = kmalloc_array(4 + n / 4, sizeof(*tail), GFP_KERNEL);
	if (!tail)
		return -ENOMEM;
	for (i = 0; i < 4; i++)
		tail[i] = cpu_to_le32(hdr[i]);
	/* Whole words: head_up - n is word-aligned, and so is the ring's data. */
	for (i = 0; i < n / 4; i++) {
		u32 at = (head_up - n + 4 * i) & (cap - 1);
		u32 word = bpnet_slow_read32(bp, ring + BPNET_LOG_RING_HEADER_LEN + at);

		tail[4 + i] = cpu_to_le32(word);
	}
	err = devlink_fmsg_binary_pair_put(fmsg, "log_ring", tail, 16 + n - (head_up - head));
	kfree(tail);
	return err;
}

static const struct devlink_health_reporter_ops bpnet_health_ops = {
	.name = "agent",
	.recover = bpnet_health_recover,
	.diagnose = bpnet_health_diagnose,
	.dump = bpnet_health_dump,
};

static const enum bpnet_recovery bpnet_recoveries[] = {
	[BPNET_RECOVER_LINK] = BPNET_RECOVER_LINK,
	[BPNET_RECOVER_RESET] = BPNET_RECOVER_RESET,
};

/* From the slow path, outside link_lock (recover takes it): make the report a tick found. */
void bpnet_health_flush(struct bpnet *bp)
{
	if (!bp->health_pending)
		return;
	bp->health_pending = false;
	mutex_lock(&bp->health_lock);
	if (bp->health_live)
		devlink_health_report(bp->reporter, bp->health_msg,
				      (void *)&bpnet_recoveries[bp->health_recovery]);
	mutex_unlock(&bp->health_lock);
}

/*
 * Slow path, under link_lock: a report is owed, with what recovers from it.
 * The first reason of a tick is the one said.
 */
void bpnet_health_note(struct bpnet *bp, enum bpnet_recovery recovery, const char *fmt, ...)
{
	va_list args;

	if (bp->health_pending)
		return;
	va_start(args, fmt);
	vsnprintf(bp->health_msg, sizeof(bp->health_msg), fmt, args);
	va_end(args);
	bp->health_recovery = recovery;
	bp->health_pending = true;
}

/*
 * Slow path, outside link_lock (devlink's lock comes first: recover takes
 * link_lock under it): once the agent has run, its port with the slot it
 * published. Registered once; not after removal began (health_live).
 */
void bpnet_devlink_port(struct bpnet *bp)
{
	struct devlink_port_attrs attrs = {};
	struct bpnet_board board;

	if (bp->dl_port_registered || !READ_ONCE(bp->running))
		return;
	mutex_lock(&bp->health_lock);
	if (!bp->health_live)
		goto out;
	if (!bpnet_read_board(bp, &board) && board.slot != BPNET_BOARD_SLOT_UNKNOWN) {
		attrs.flavour = DEVLINK_PORT_FLAVOUR_PHYSICAL;
		attrs.phys.port_number = board.slot;
		devlink_port_attrs_set(&bp->dl_port, &attrs);
	}
	if (devlink_port_register(bp->devlink, &bp->dl_port, 0))
		goto out;
	devlink_port_type_eth_set(&bp->dl_port, bp->netdev);
	WRITE_ONCE(bp->dl_port_registered, true);
out:
	mutex_unlock(&bp->health_lock);
}

int bpnet_devlink_probe(struct bpnet *bp)
{
	struct devlink *devlink;
	int err;

	mutex_init(&bp->health_lock);
	devlink = devlink_alloc(&bpnet_devlink_ops, sizeof(struct bpnet_devlink), &bp->pdev->dev);
	if (!devlink)
		return -ENOMEM;
	((struct bpnet_devlink *)devlink_priv(devlink))->bp = bp;
	bp->devlink = devlink;
	bp->reporter = devlink_health_reporter_create(devlink, &bpnet_health_ops,
						      BPNET_HEALTH_GRACE_MS, bp);
	if (IS_ERR(bp->reporter)) {
		err = PTR_ERR(bp->reporter);
		bp->reporter = NULL;
		devlink_free(devlink);
		bp->devlink = NULL;
		return err;
	}
	return 0;
}

/* After register_netdev: the instance is seen. */
void bpnet_devlink_register(struct bpnet *bp)
{
	devlink_register(bp->devlink);
	mutex_lock(&bp->health_lock);
	bp->health_live = true;
	mutex_unlock(&bp->health_lock);
}

/* Before unregister_netdev: no more reports or port, then the port and the instance go. */
void bpnet_devlink_unregister(struct bpnet *bp)
{
	mutex_lock(&bp->health_lock);
	bp->health_live = false;
	mutex_unlock(&bp->health_lock);
	devlink_unregister(bp->devlink);
	if (bp->dl_port_registered) {
		WRITE_ONCE(bp->dl_port_registered, false);
		devlink_port_type_clear(&bp->dl_port);
		devlink_port_unregister(&bp->dl_port);
	}
}

/* After the slow path is stopped for good. */
void bpnet_devlink_free(struct bpnet *bp)
{
	if (!bp->devlink)
		return;
	devlink_health_reporter_destroy(bp->reporter);
	devlink_free(bp->devlink);
	bp->devlink = NULL;
}
