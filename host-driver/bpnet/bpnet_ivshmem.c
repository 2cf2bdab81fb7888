// SPDX-License-Identifier: GPL-2.0
/*
 * bpnet bus personality "ivshmem": the virtual backplane. Each agent is an
 * ivshmem-doorbell device (1af4:1110): BAR2 is the shared region, BAR0 holds
 * the doorbell register, and the agent's two notifications arrive as MSI-X
 * vectors. An MSI-X message is a posted write ordered behind the agent's DMA,
 * so no register is read to flush or acknowledge anything; it pairs with the
 * agent ringing only after its status chain ended (Doorbell::interrupt_host).
 */

#include <linux/pci.h>

#include "bpnet.h"

/* ivshmem-doorbell BAR0 registers (QEMU's ivshmem specification). */
#define IVSHMEM_DOORBELL	12
#define IVSHMEM_REGS_LEN	16
#define IVSHMEM_REGS_BAR	0
#define IVSHMEM_SHARED_BAR	2

static irqreturn_t bpnet_ivshmem_status_irq(int irq, void *data)
{
	struct bpnet *bp = data;

	bpnet_count(bp, BPNET_STAT_interrupts, 1);
	if (!bpnet_interrupt_storm(bp, false))
		bpnet_status_event(bp);
	return IRQ_HANDLED;
}

static irqreturn_t bpnet_ivshmem_link_irq(int irq, void *data)
{
	struct bpnet *bp = data;

	bpnet_count(bp, BPNET_STAT_interrupts, 1);
	if (!bpnet_interrupt_storm(bp, true))
		bpnet_link_event(bp);
	return IRQ_HANDLED;
}

static int bpnet_ivshmem_start(struct bpnet *bp)
{
	struct pci_dev *pdev = bp->pdev;
	int err;

	/*
	 * ivshmem-plain shares the device ID but has no MSI-X and no doorbell:
	 * some other user's shared memory, never an agent. Left alone quietly.
	 */
	if (!pdev->msix_cap) {
		dev_info(&pdev->dev, "ivshmem without MSI-X (ivshmem-plain): not a bpnet agent, left alone\n");
		return -ENODEV;
	}
	if (pci_resource_len(pdev, IVSHMEM_SHARED_BAR) < BPNET_SHARED_LEN) {
		dev_err(&pdev->dev, "BAR%d holds %llu bytes, the shared region needs %u\n",
			IVSHMEM_SHARED_BAR,
			(unsigned long long)pci_resource_len(pdev, IVSHMEM_SHARED_BAR),
			BPNET_SHARED_LEN);
		return -ENODEV;
	}
	/* Regions are released by the managed device; map only what is used. */
	err = pci_request_region(pdev, IVSHMEM_REGS_BAR, BPNET_DRV_NAME);
	if (!err)
		err = pci_request_region(pdev, IVSHMEM_SHARED_BAR, BPNET_DRV_NAME);
	if (err)
		return err;
	bp->regs = pcim_iomap(pdev, IVSHMEM_REGS_BAR, IVSHMEM_REGS_LEN);
	bp->shared = pcim_iomap(pdev, IVSHMEM_SHARED_BAR, BPNET_SHARED_LEN);
	if (!bp->regs || !bp->shared)
		return -ENOMEM;

	err = pci_alloc_irq_vectors(pdev, BPNET_IVSHMEM_VECTORS, BPNET_IVSHMEM_VECTORS,
				    PCI_IRQ_MSIX);
	if (err < 0) {
		dev_err(&pdev->dev, "needs %u MSI-X vectors (ivshmem-doorbell vectors=%u)\n",
			BPNET_IVSHMEM_VECTORS, BPNET_IVSHMEM_VECTORS);
		return err;
	}
	err = request_irq(pci_irq_vector(pdev, BPNET_IVSHMEM_VECTOR_STATUS),
			  bpnet_ivshmem_status_irq, 0, bp->irq_names[BPNET_IRQ_STATUS], bp);
	if (err)
		goto err_vectors;
	err = request_irq(pci_irq_vector(pdev, BPNET_IVSHMEM_VECTOR_LINK),
			  bpnet_ivshmem_link_irq, 0, bp->irq_names[BPNET_IRQ_LINK], bp);
	if (err)
		goto err_status;
	return 0;

err_status:
	free_irq(pci_irq_vector(pdev, BPNET_IVSHMEM_VECTOR_STATUS), bp);
err_vectors:
	pci_free_irq_vectors(pdev);
	return err;
}

static void bpnet_ivshmem_stop(struct bpnet *bp)
{
	struct pci_dev *pdev = bp->pdev;

	free_irq(pci_irq_vector(pdev, BPNET_IVSHMEM_VECTOR_LINK), bp);
	free_irq(pci_irq_vector(pdev, BPNET_IVSHMEM_VECTOR_STATUS), bp);
	pci_free_irq_vectors(pdev);
}

/*
 * After a storm: the vectors are the device's own (MSI-X), so they can be
 * turned off, from the storming handler itself, until the next set-up.
 */
static void bpnet_ivshmem_mask(struct bpnet *bp, bool masked)
{
	int status = pci_irq_vector(bp->pdev, BPNET_IVSHMEM_VECTOR_STATUS);
	int link = pci_irq_vector(bp->pdev, BPNET_IVSHMEM_VECTOR_LINK);

	if (masked) {
		disable_irq_nosync(status);
		disable_irq_nosync(link);
	} else {
		enable_irq(status);
		enable_irq(link);
	}
}

/* WORK: the agent's peer, its work vector (one posted write). */
static void bpnet_ivshmem_notify(struct bpnet *bp)
{
	bpnet_write(bp, bp->regs + IVSHMEM_DOORBELL,
		    BPNET_IVSHMEM_AGENT_PEER << 16 | BPNET_IVSHMEM_VECTOR_WORK, 4);
}

/* CONTROL: the agent's peer, its control vector (one posted write). */
static void bpnet_ivshmem_control(struct bpnet *bp)
{
	bpnet_write(bp, bp->regs + IVSHMEM_DOORBELL,
		    BPNET_IVSHMEM_AGENT_PEER << 16 | BPNET_IVSHMEM_VECTOR_CONTROL, 4);
}

const struct bpnet_bus_ops bpnet_ivshmem_ops = {
	.name = "ivshmem",
	.start = bpnet_ivshmem_start,
	.stop = bpnet_ivshmem_stop,
	.notify = bpnet_ivshmem_notify,
	.control = bpnet_ivshmem_control,
	.mask = bpnet_ivshmem_mask,
};
