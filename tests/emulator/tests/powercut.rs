//! Power cuts at every flash step of a firmware update, through the real boot stage and firmware
//! (`bpnet_emu::powercut`): every cut must end with the board starting a verified image.

mod common;

use bpnet_emu::powercut;

#[test]
fn every_power_cut_during_an_update_ends_with_a_verified_image_started() {
    let setup = powercut::setup_from_files(
        &common::firmware("BPNET_BOOT_ELF"),
        &common::firmware("BPNET_FIRMWARE_ELF"),
        &common::firmware("BPNET_FIRMWARE_IMG"),
        &common::firmware("BPNET_IMAGE_KEY"),
    )
    .expect("images and key readable");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let report = powercut::run(&setup, threads, &|_, _| {}).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report.failures.is_empty(),
        "{} of {} cuts failed:\n{}",
        report.failures.len(),
        report.tested,
        report.failures.join("\n")
    );
    // Every step cut: the erases and word programs of slot B, both boot-state records the update
    // writes, and the record of the first boot after it.
    let record_words = bpnet_update::record::RECORD_LEN as u64 / 2;
    let image_words = (setup.new_image.len() as u64).div_ceil(2);
    assert!(report.update >= image_words + 1 + 2 * (1 + record_words), "update steps: {report:?}");
    assert_eq!(report.first_boot, 1 + record_words, "the first boot writes one record");
    assert_eq!(report.tested, report.update + report.first_boot);
    assert_eq!(report.survived, report.tested);
    // A cut during the update brings the old image back; during the first boot after it, the new one.
    assert_eq!(report.old, report.update, "{report:?}");
    assert_eq!(report.new, report.first_boot, "{report:?}");
}
