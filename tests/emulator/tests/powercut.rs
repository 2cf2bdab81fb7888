//! Power cuts during a firmware update, through the real boot stage and firmware
//! (`bpnet_emu::powercut`): every cut must end with the board starting a verified image. The suite cuts
//! a sample ([`powercut::Cuts::SAMPLE`]: every step where the kind of step changes, a stride through the
//! image's write-buffer pages); `bpnet-powercut` and `cargo xtask bench` cut every step.

mod common;

use bpnet_emu::powercut;

#[test]
fn power_cuts_during_an_update_end_with_a_verified_image_started() {
    let setup = powercut::setup_from_files(
        &common::firmware("BPNET_BOOT_ELF"),
        &common::firmware("BPNET_FIRMWARE_ELF"),
        &common::firmware("BPNET_FIRMWARE_IMG"),
        &common::firmware("BPNET_IMAGE_KEY"),
    )
    .expect("images and key readable");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let report = powercut::run(&setup, powercut::Cuts::SAMPLE, threads, &|_, _| {}).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report.failures.is_empty(),
        "{} of {} cuts failed:\n{}",
        report.failures.len(),
        report.tested,
        report.failures.join("\n")
    );
    // The steps: the erase and buffer programs (a write-buffer page each) of slot B, both boot-state
    // records the update writes, and the record of the first boot after it.
    let page = u64::from(bpnet_emu::FLASH_BUFFER_WORDS) * 2;
    let record_pages = (bpnet_update::record::RECORD_LEN as u64).div_ceil(page);
    let image_pages = (setup.new_image.len() as u64).div_ceil(page);
    assert!(report.update >= image_pages + 1 + 2 * (1 + record_pages), "update steps: {report:?}");
    assert!(report.update <= image_pages + 2 + 2 * (1 + record_pages), "one program per page: {report:?}");
    assert_eq!(report.first_boot, 1 + record_pages, "the first boot writes one record");
    // Cut: both records and the erase in full, a stride through the words, all of the first boot.
    let powercut::Cuts::Sample { edge, stride } = powercut::Cuts::SAMPLE else { unreachable!() };
    assert!(edge > 1 + record_pages + 1, "the sample's edges cover the records and the erase");
    let between = report.update - 2 * edge;
    assert!(
        (2 * edge + between / stride - 1..=2 * edge + between / stride + 1).contains(&report.selected_update),
        "a stride of {stride} between edges of {edge}: {report:?}"
    );
    assert_eq!(report.tested, report.selected);
    assert_eq!(report.selected, report.selected_update + report.first_boot);
    assert_eq!(report.survived, report.tested);
    // A cut during the update brings the old image back; during the first boot after it, the new one.
    assert_eq!(report.old, report.selected_update, "{report:?}");
    assert_eq!(report.new, report.first_boot, "{report:?}");
}
