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
 * clears the bits with a posted write (write-1-to-clear). One read per
 * interrupt, never per frame. The read pairs with the agent ringing ODR only
 * after its status chain ended (Doorbell::interrupt_host, behind the sync in
 * ChainDma::poll, firmware/app/src/net/hw.rs).
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
/* OMIMR bits (1 = masked): outbound message registers 0 and 1. */
#define MPC834X_OMIMR_OM0I	0x1
#define MPC834X_OMIMR_OM1I	0x2
/* PCI programming interface of an MPC834x in agent (not host) mode. */
#define MPC834X_PROG_IF_AGENT	1

#define MPC834X_ODR_OURS	(BPNET_NOTIFY_STATUS | BPNET_NOTIFY_LINK)

static irqreturn_t bpnet_mpc834x_irq(int irq, void *data)
{
	struct bpnet *bp = data;
	u32 odr = bpnet_read32(bp, bp->regs + MPC834X_ODR);

	/* All ones: the device is gone (or not answering), so not ours. */
	if (odr == ~0U || !(odr & MPC834X_ODR_OURS))
		return IRQ_NONE;
	odr &= MPC834X_ODR_OURS;
	bpnet_write(bp, bp->regs + MPC834X_ODR, odr, 4);
	bpnet_count(bp, BPNET_STAT_interrupts, 1);
	/* INTx may be shared: a storm is dropped here, never masked. */
	if ((odr & BPNET_NOTIFY_STATUS) && !bpnet_interrupt_storm(bp, false))
		bpnet_status_event(bp);
	if ((odr & BPNET_NOTIFY_LINK) && !bpnet_interrupt_storm(bp, true))
		bpnet_link_event(bp);
	return IRQ_HANDLED;
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
	/* Only the doorbell interrupts the host; the message registers must not. */
	bpnet_write(bp, bp->regs + MPC834X_OMIMR, MPC834X_OMIMR_OM0I | MPC834X_OMIMR_OM1I, 4);
	err = request_irq(pci_irq_vector(pdev, 0), bpnet_mpc834x_irq, IRQF_SHARED,
			  bp->irq_names[BPNET_IRQ_ALL], bp);
	if (err) {
		pci_free_irq_vectors(pdev);
		return err;
	}
	return 0;
}

static void bpnet_mpc834x_stop(struct bpnet *bp)
{
	free_irq(pci_irq_vector(bp->pdev, 0), bp);
	pci_free_irq_vectors(bp->pdev);
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
};
