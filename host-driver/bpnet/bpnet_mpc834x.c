// SPDX-License-Identifier: GPL-2.0
/*
 * bpnet bus personality "mpc834x": an MPC834x board in PCI agent mode.
 *
 * BAR0 maps the agent's 1 MiB IMMR block, where the host reaches the message
 * unit; BAR1 is inbound window 0, which the firmware points at the shared
 * region. The agent interrupts over INTx (possibly shared) by ringing outbound
 * doorbell bits in ODR; the host rings it through IDR.
 *
 * INTx is a side-band wire, not ordered with the agent's posted DMA writes, so
 * the handler reads ODR once: the read says whether the interrupt is ours and
 * its completion pushes the agent's earlier DMA writes into host RAM. It then
 * clears every set bit with a posted write (write-1-to-clear). One read per
 * interrupt, never per frame. The read pairs with the agent ringing ODR only
 * after its status chain ended (Doorbell::interrupt_host, behind the sync in
 * ChainDma::poll, firmware/app/src/net/hw.rs).
 *
 * The line may be shared with other agents and other devices. The handler
 * therefore claims an interrupt exactly when ODR had a bit set, and always
 * writes back every set bit: a bit the contract does not define is counted
 * as a violation, never left set (a level line left asserted behind IRQ_NONE
 * gets the whole line disabled, for every device on it).
 *
 * The clear is posted: on real PCI it may still be on its way when the
 * handler returns and the interrupt controller takes the end of interrupt,
 * so the still-asserted level can deliver the interrupt once more. That
 * second run reads ODR (the read pushes the posted clear ahead of it), finds
 * no bit and returns IRQ_NONE: at most one unhandled interrupt per handled
 * one, far below what the kernel's spurious-interrupt detector acts on (it
 * disables a line only when 99 900 of 100 000 go unhandled). Reading ODR back
 * after the clear would avoid it at the cost of a second read per interrupt,
 * which the design spends nowhere. On the virtual backplane the emulator
 * lowers the level before it completes the write, so the extra run does not
 * happen there.
 *
 * A hard reset of the agent (HRESET) resets its PCI function: BARs and the
 * command register read zero and the configuration lock is set again until
 * its firmware is ready. The BARs then decode nothing and every access reads
 * all ones. The slow path notices the lost memory decode in the command
 * register and restores the configuration saved at start, after which the
 * link comes back through its usual reset (a new agent generation).
 *
 * Not tested on hardware: register facts from docs/REGISTERS.md.
 */

#include <linux/pci.h>

#include "bpnet.h"

#define MPC834X_IMMR_BAR	0
#define MPC834X_SHARED_BAR	1
#define MPC834X_IMMR_LEN	0x100000
/* Message unit, IMMR offsets; little-endian registers. */
#define MPC834X_OMIMR		0x8034
#define MPC834X_ODR		0x8060
#define MPC834X_IDR		0x8068
/*
 * OMIMR bits (1 = masked): outbound message registers 0 and 1, and the
 * outbound doorbell (ODIM).
 */
#define MPC834X_OMIMR_OM0I	0x1
#define MPC834X_OMIMR_OM1I	0x2
#define MPC834X_OMIMR_ODI	0x8
/* Only the doorbell interrupts the host; the message registers never do. */
#define MPC834X_OMIMR_RUNNING	(MPC834X_OMIMR_OM0I | MPC834X_OMIMR_OM1I)
/* PCI programming interface of an MPC834x in agent (not host) mode. */
#define MPC834X_PROG_IF_AGENT	1

#define MPC834X_ODR_OURS	(BPNET_NOTIFY_STATUS | BPNET_NOTIFY_LINK)

/*
 * A hard reset took the function's BARs, but its firmware may ring, and so
 * assert INTA#, before the slow path restores them: a level this handler
 * cannot clear would fire until the kernel disabled the line under every
 * agent on the pin, and on one CPU would starve the slow path meant to fix
 * it. The function's own INTx-disable bit silences it instead, once per
 * reset; the restore writes the saved command register back. A neighbour's
 * interrupt costs one status read here (the function is not asserting).
 */
static bool bpnet_mpc834x_silence(struct bpnet *bp)
{
	struct pci_dev *pdev = bp->pdev;
	u16 status;

	if (READ_ONCE(bp->intx_silenced))
		return false;
	if (pci_read_config_word(pdev, PCI_STATUS, &status) || PCI_POSSIBLE_ERROR(status) ||
	    !(status & PCI_STATUS_INTERRUPT))
		return false;
	pci_write_config_word(pdev, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE);
	WRITE_ONCE(bp->intx_silenced, true);
	return true;
}

static irqreturn_t bpnet_mpc834x_irq(int irq, void *data)
{
	struct bpnet *bp = data;
	u32 odr = bpnet_read32(bp, bp->regs + MPC834X_ODR);

	/*
	 * All ones: the function does not answer (a hard reset took its BARs,
	 * or it is gone). If it asserts the line all the same, it is silenced
	 * at its command register; the slow path finds out which and restores
	 * what it can.
	 */
	if (odr == ~0U) {
		bpnet_link_event(bp);
		return bpnet_mpc834x_silence(bp) ? IRQ_HANDLED : IRQ_NONE;
	}
	/* No bit: another device on the shared line (or a posted clear's echo). */
	if (!odr)
		return IRQ_NONE;
	/* Every set bit back, so the level drops whatever the agent rang. */
	bpnet_write(bp, bp->regs + MPC834X_ODR, odr, 4);
	bpnet_count(bp, BPNET_STAT_interrupts, 1);
	if (odr & ~MPC834X_ODR_OURS)
		bpnet_refuse(bp, "outbound doorbell bits %#x are not defined",
			     odr & ~MPC834X_ODR_OURS);
	/*
	 * A storm is dropped here and masked at its source (OMIMR), never on
	 * the line: the line may carry a neighbour's interrupts.
	 */
	if ((odr & BPNET_NOTIFY_STATUS) && !bpnet_interrupt_storm(bp, false))
		bpnet_status_event(bp);
	if ((odr & BPNET_NOTIFY_LINK) && !bpnet_interrupt_storm(bp, true))
		bpnet_link_event(bp);
	return IRQ_HANDLED;
}

/*
 * Doorbells rung before this host listened (an earlier driver, or the agent's
 * boot) say nothing the link's set-up does not read again from the header:
 * clear them, so the line starts deasserted and the next ring is an edge of
 * the level the interrupt controller sees. A slow-path read, once per start.
 */
static void bpnet_mpc834x_clear_stale(struct bpnet *bp)
{
	u32 odr;

	bpnet_count(bp, BPNET_STAT_host_bar_reads_slow_path, 1);
	odr = bpnet_read32(bp, bp->regs + MPC834X_ODR);
	if (odr && odr != ~0U)
		bpnet_write(bp, bp->regs + MPC834X_ODR, odr, 4);
}

static int bpnet_mpc834x_start(struct bpnet *bp)
{
	struct pci_dev *pdev = bp->pdev;
	int err;

	if ((pdev->class & 0xff) != MPC834X_PROG_IF_AGENT) {
		dev_info(&pdev->dev, "not in PCI agent mode\n");
		return -ENODEV;
	}
	if (pci_resource_len(pdev, MPC834X_IMMR_BAR) < MPC834X_IMMR_LEN ||
	    pci_resource_len(pdev, MPC834X_SHARED_BAR) < BPNET_SHARED_LEN) {
		dev_err(&pdev->dev, "BAR0 must map IMMR and BAR1 the %u-byte shared region\n",
			BPNET_SHARED_LEN);
		return -ENODEV;
	}
	/*
	 * Regions are released by the managed device. Map only what is used:
	 * the inbound window may be larger than the shared region.
	 */
	err = pci_request_region(pdev, MPC834X_IMMR_BAR, BPNET_DRV_NAME);
	if (!err)
		err = pci_request_region(pdev, MPC834X_SHARED_BAR, BPNET_DRV_NAME);
	if (err)
		return err;
	bp->regs = pcim_iomap(pdev, MPC834X_IMMR_BAR, MPC834X_IMMR_LEN);
	bp->shared = pcim_iomap(pdev, MPC834X_SHARED_BAR, BPNET_SHARED_LEN);
	if (!bp->regs || !bp->shared)
		return -ENOMEM;

	err = pci_alloc_irq_vectors(pdev, 1, 1, PCI_IRQ_LEGACY);
	if (err < 0)
		return err;
	bpnet_write(bp, bp->regs + MPC834X_OMIMR, MPC834X_OMIMR_RUNNING, 4);
	bpnet_mpc834x_clear_stale(bp);
	err = request_irq(pci_irq_vector(pdev, 0), bpnet_mpc834x_irq, IRQF_SHARED,
			  bp->irq_names[BPNET_IRQ_ALL], bp);
	if (err) {
		pci_free_irq_vectors(pdev);
		return err;
	}
	/* What a hard reset of the agent loses: BARs, command, INTx enable. */
	pci_save_state(pdev);
	return 0;
}

static void bpnet_mpc834x_stop(struct bpnet *bp)
{
	free_irq(pci_irq_vector(bp->pdev, 0), bp);
	pci_free_irq_vectors(bp->pdev);
}

/*
 * Slow path: a hard reset of the agent cleared its command register (and its
 * BARs). One configuration read per tick finds out; while the agent's
 * configuration lock is set the read is retried by the bus until its firmware
 * is ready, and all ones means nothing answers (left to the slow path).
 */
static void bpnet_mpc834x_restore(struct bpnet *bp)
{
	struct pci_dev *pdev = bp->pdev;
	u16 command;

	if (pci_read_config_word(pdev, PCI_COMMAND, &command) ||
	    PCI_POSSIBLE_ERROR(command) || (command & PCI_COMMAND_MEMORY))
		return;
	dev_info(&pdev->dev, "agent was reset: restoring its PCI configuration (BARs, command)\n");
	pci_restore_state(pdev);
	/* Restoring consumes the saved state: keep it for the next reset. */
	pci_save_state(pdev);
	/* The saved command register has INTx on again (bpnet_mpc834x_silence). */
	WRITE_ONCE(bp->intx_silenced, false);
	/* The message unit reset too: only the doorbell may interrupt. */
	bpnet_write(bp, bp->regs + MPC834X_OMIMR, MPC834X_OMIMR_RUNNING, 4);
	bpnet_mpc834x_clear_stale(bp);
}

/*
 * After a storm: mask the doorbell at the agent (OMIMR ODIM), which lowers
 * its INTA# and leaves the shared line to the other devices on it; any
 * context, one posted write. The next set-up unmasks it.
 */
static void bpnet_mpc834x_mask(struct bpnet *bp, bool masked)
{
	u32 mask = MPC834X_OMIMR_RUNNING | (masked ? MPC834X_OMIMR_ODI : 0);

	bpnet_write(bp, bp->regs + MPC834X_OMIMR, mask, 4);
}

/* WORK: set the inbound doorbell bit (one posted write). */
static void bpnet_mpc834x_notify(struct bpnet *bp)
{
	bpnet_write(bp, bp->regs + MPC834X_IDR, BPNET_NOTIFY_WORK, 4);
}

/* CONTROL: set the inbound doorbell's control bit (one posted write). */
static void bpnet_mpc834x_control(struct bpnet *bp)
{
	bpnet_write(bp, bp->regs + MPC834X_IDR, BPNET_NOTIFY_CONTROL, 4);
}

const struct bpnet_bus_ops bpnet_mpc834x_ops = {
	.name = "mpc834x",
	.start = bpnet_mpc834x_start,
	.stop = bpnet_mpc834x_stop,
	.notify = bpnet_mpc834x_notify,
	.control = bpnet_mpc834x_control,
	.mask = bpnet_mpc834x_mask,
	.restore = bpnet_mpc834x_restore,
};
