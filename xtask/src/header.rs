//! The C header the kernel module includes, generated from the wire contract crate so the two sides
//! share one definition: every constant comes from a contract const and every structure from the
//! contract's schema, with a `static_assert` on each size and each field offset so that the C
//! compiler itself proves the layouts agree. `cargo xtask test` fails when the checked-in file is
//! stale; `cargo xtask gen-header` rewrites it.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use bpnet_contract::schema::{Struct, Type, STRUCTS};
use bpnet_contract::{bar, ivshmem, logring, notify, ring, shared, status};

/// Where the header lives, relative to the repository root.
pub const PATH: &str = "host-driver/include/bpnet_contract.h";

/// Column the values of `#define`s and the offset comments of fields are aligned to (tabs of 8).
const VALUE_COLUMN: usize = 48;
const COMMENT_COLUMN: usize = 40;

/// How a constant is printed: masks, offsets and magics in hex, counts in decimal.
#[derive(Clone, Copy)]
enum Base {
    Dec,
    Hex,
}
use Base::{Dec, Hex};

/// The header's text.
pub fn generate() -> String {
    let mut out = String::new();
    out.push_str(
        "/* SPDX-License-Identifier: GPL-2.0 OR MIT */\n\
         /*\n \
         * bpnet wire contract: the shared memory between the host and an agent.\n \
         *\n \
         * Generated from firmware/contract by `cargo xtask gen-header`; do not edit.\n \
         * All fields are little-endian. The host writes into agent RAM (the BAR) only with\n \
         * posted writes and reads it only at set-up; the agent writes into host RAM (the\n \
         * status block) only by DMA.\n \
         */\n\
         #ifndef BPNET_CONTRACT_H\n\
         #define BPNET_CONTRACT_H\n\
         \n\
         #include <linux/build_bug.h>\n\
         #include <linux/stddef.h>\n\
         #include <linux/types.h>\n",
    );

    section(&mut out, "Identification");
    define(&mut out, "BPNET_MAGIC", bar::MAGIC.into(), Hex);
    define(&mut out, "BPNET_VERSION_MAJOR", bar::VERSION_MAJOR.into(), Dec);
    define(&mut out, "BPNET_VERSION_MINOR", bar::VERSION_MINOR.into(), Dec);
    define(&mut out, "BPNET_LOG_RING_MAGIC", logring::MAGIC.into(), Hex);

    section(&mut out, "The shared region (agent RAM behind the BAR): fixed offsets, then defaults");
    define(&mut out, "BPNET_SHARED_LEN", shared::LEN as u64, Hex);
    define(&mut out, "BPNET_HEADER_OFFSET", shared::HEADER_OFFSET as u64, Hex);
    define(&mut out, "BPNET_DOORBELLS_OFFSET", shared::DOORBELLS_OFFSET as u64, Hex);
    define(&mut out, "BPNET_LOG_RING_OFFSET", shared::LOG_RING_OFFSET as u64, Hex);
    define(&mut out, "BPNET_LOG_RING_LEN", shared::LOG_RING_LEN as u64, Hex);
    define(&mut out, "BPNET_LOG_RING_HEADER_LEN", logring::HEADER_LEN as u64, Dec);
    define(&mut out, "BPNET_COUNTERS_OFFSET", shared::COUNTERS_OFFSET as u64, Hex);
    define(&mut out, "BPNET_AGENT_INFO_OFFSET", shared::AGENT_INFO_OFFSET as u64, Hex);
    define(&mut out, "BPNET_TX_RING_OFFSET", shared::TX_RING_OFFSET as u64, Hex);
    define(&mut out, "BPNET_RX_RING_OFFSET", shared::RX_RING_OFFSET as u64, Hex);
    define(&mut out, "BPNET_BOOT_OFFSET", shared::BOOT_OFFSET as u64, Hex);
    define(&mut out, "BPNET_BOARD_INFO_OFFSET", shared::BOARD_INFO_OFFSET as u64, Hex);
    define(&mut out, "BPNET_RECOVERY_OFFSET", shared::RECOVERY_OFFSET as u64, Hex);
    define(&mut out, "BPNET_RECOVERY_LEN", shared::RECOVERY_LEN as u64, Hex);

    section(&mut out, "Sizes and limits");
    define(&mut out, "BPNET_HEADER_LEN", bar::HEADER_LEN as u64, Dec);
    define(&mut out, "BPNET_DOORBELLS_LEN", bar::DOORBELLS_LEN as u64, Dec);
    define(&mut out, "BPNET_DESCRIPTOR_LEN", bar::DESCRIPTOR_LEN as u64, Dec);
    define(&mut out, "BPNET_COUNTERS_LEN", bar::COUNTERS_LEN as u64, Dec);
    define(&mut out, "BPNET_AGENT_INFO_LEN", bar::AGENT_INFO_LEN as u64, Dec);
    define(&mut out, "BPNET_BOARD_INFO_LEN", bar::BOARD_INFO_LEN as u64, Dec);
    define(&mut out, "BPNET_BOARD_SLOTS", bar::BOARD_SLOTS.into(), Dec);
    define(&mut out, "BPNET_BOARD_SLOT_UNKNOWN", bar::BOARD_SLOT_UNKNOWN.into(), Hex);
    define(&mut out, "BPNET_BOARD_SERIAL_MAX", bar::BOARD_SERIAL_MAX.into(), Hex);
    define(&mut out, "BPNET_BOARD_MPC8349EMDS", bar::board::MPC8349EMDS.into(), Dec);
    define(&mut out, "BPNET_FAULT_VECTOR_MAX", bar::FAULT_VECTOR_MAX.into(), Hex);
    define(&mut out, "BPNET_COUNTER_SLOTS", bar::COUNTER_SLOTS as u64, Dec);
    define(&mut out, "BPNET_BOOT_BLOCK_LEN", bar::BOOT_BLOCK_LEN as u64, Dec);
    define(&mut out, "BPNET_STATUS_HEADER_LEN", status::HEADER_LEN as u64, Dec);
    define(&mut out, "BPNET_COMPLETION_LEN", status::COMPLETION_LEN as u64, Dec);
    define(&mut out, "BPNET_STATUS_BLOCK_ALIGN", bar::STATUS_BLOCK_ALIGN, Dec);
    define(&mut out, "BPNET_RING_ENTRIES_MIN", ring::Entries::MIN.into(), Dec);
    define(&mut out, "BPNET_RING_ENTRIES_MAX", ring::Entries::MAX.into(), Dec);
    define(&mut out, "BPNET_MTU_MIN", bar::MTU_MIN.into(), Dec);
    define(&mut out, "BPNET_MTU_MAX", bar::MTU_MAX.into(), Dec);
    define(&mut out, "BPNET_RX_BUFFER_MIN", bar::RX_BUFFER_MIN.into(), Dec);
    define(&mut out, "BPNET_RX_CHAIN_MAX", bar::RX_CHAIN_MAX.into(), Dec);
    define(&mut out, "BPNET_MTU_DEFAULT", bar::MTU_DEFAULT.into(), Dec);
    out.push_str(
        "\n/* The status block: the header, then `entries` TX and `entries` RX completions. */\n\
         #define BPNET_STATUS_TX_COMPLETIONS_OFFSET(entries)\tBPNET_STATUS_HEADER_LEN\n\
         #define BPNET_STATUS_RX_COMPLETIONS_OFFSET(entries)\t\\\n\
         \t(BPNET_STATUS_HEADER_LEN + (entries) * BPNET_COMPLETION_LEN)\n\
         #define BPNET_STATUS_BLOCK_LEN(entries)\t\\\n\
         \t(BPNET_STATUS_HEADER_LEN + 2 * (entries) * BPNET_COMPLETION_LEN)\n",
    );

    section(&mut out, "header.agent_state and header.host_state (bytes: write them alone)");
    for state in [
        bar::AgentState::Reset,
        bar::AgentState::Ready,
        bar::AgentState::Running,
        bar::AgentState::Broken,
        bar::AgentState::Recovery,
    ] {
        let name = format!("BPNET_AGENT_STATE_{}", format!("{state:?}").to_uppercase());
        define(&mut out, &name, state as u64, Dec);
    }
    for state in [bar::HostState::Down, bar::HostState::Up] {
        let name = format!("BPNET_HOST_STATE_{}", format!("{state:?}").to_uppercase());
        define(&mut out, &name, state as u64, Dec);
    }

    section(&mut out, "Feature bits: header.agent_features offered, header.host_features accepted");
    define(&mut out, "BPNET_F_CSUM_OFFLOAD", bar::feature::CSUM_OFFLOAD.into(), Hex);
    define(&mut out, "BPNET_F_EVENT_INDEX", bar::feature::EVENT_INDEX.into(), Hex);
    define(&mut out, "BPNET_F_MTU", bar::feature::MTU.into(), Hex);
    define(&mut out, "BPNET_F_RX_MULTI_BUFFER", bar::feature::RX_MULTI_BUFFER.into(), Hex);
    define(&mut out, "BPNET_F_ALL", bar::feature::ALL.into(), Hex);

    section(&mut out, "descriptor.flags");
    define(&mut out, "BPNET_DESC_F_NEEDS_CSUM", bar::desc_flags::NEEDS_CSUM.into(), Hex);
    define(&mut out, "BPNET_DESC_F_ALL", bar::desc_flags::ALL.into(), Hex);

    section(&mut out, "completion.flags");
    define(&mut out, "BPNET_COMPL_F_CSUM_VALID", status::compl_flags::CSUM_VALID.into(), Hex);
    define(&mut out, "BPNET_COMPL_F_NEEDS_CSUM", status::compl_flags::NEEDS_CSUM.into(), Hex);
    define(&mut out, "BPNET_COMPL_F_MORE", status::compl_flags::MORE.into(), Hex);
    define(&mut out, "BPNET_COMPL_F_ERROR", status::compl_flags::ERROR.into(), Hex);
    define(&mut out, "BPNET_COMPL_F_ALL", status::compl_flags::ALL.into(), Hex);

    section(&mut out, "status.interrupt_cause (a hint: the indexes decide)");
    define(&mut out, "BPNET_CAUSE_RX", status::cause::RX.into(), Hex);
    define(&mut out, "BPNET_CAUSE_TX", status::cause::TX.into(), Hex);
    define(&mut out, "BPNET_CAUSE_LINK", status::cause::LINK.into(), Hex);
    define(&mut out, "BPNET_CAUSE_ERROR", status::cause::ERROR.into(), Hex);
    define(&mut out, "BPNET_CAUSE_ALL", status::cause::ALL.into(), Hex);

    section(&mut out, "Message-unit doorbell bits: IDR rung by the host, ODR by the agent");
    define(&mut out, "BPNET_NOTIFY_WORK", notify::WORK.into(), Hex);
    define(&mut out, "BPNET_NOTIFY_STATUS", notify::STATUS.into(), Hex);
    define(&mut out, "BPNET_NOTIFY_LINK", notify::LINK.into(), Hex);
    define(&mut out, "BPNET_NOTIFY_CONTROL", notify::CONTROL.into(), Hex);

    section(&mut out, "The boot block: how the agent started, and the host's requests (recovery, reset)");
    for (name, value) in [
        ("DIRECT", bar::boot_source::DIRECT),
        ("FLASH", bar::boot_source::FLASH),
        ("NETBOOT", bar::boot_source::NETBOOT),
        ("RECOVERY", bar::boot_source::RECOVERY),
    ] {
        define(&mut out, &format!("BPNET_BOOT_SOURCE_{name}"), value.into(), Dec);
    }
    define(&mut out, "BPNET_BOOT_SLOT_NONE", bar::BOOT_SLOT_NONE.into(), Hex);
    define(&mut out, "BPNET_SLOT_STATE_UNKNOWN", bar::SLOT_STATE_UNKNOWN.into(), Hex);
    define(&mut out, "BPNET_SLOT_STATE_EMPTY", bar::slot_state::EMPTY.into(), Dec);
    define(&mut out, "BPNET_SLOT_STATE_WRITTEN", bar::slot_state::WRITTEN.into(), Dec);
    define(&mut out, "BPNET_SLOT_STATE_CONFIRMED", bar::slot_state::CONFIRMED.into(), Dec);
    define(&mut out, "BPNET_SLOT_STATE_REJECTED", bar::slot_state::REJECTED.into(), Dec);
    define(&mut out, "BPNET_BOOT_F_TRIAL", bar::boot_flags::TRIAL.into(), Hex);
    define(&mut out, "BPNET_BOOT_F_CONFIRMED", bar::boot_flags::CONFIRMED.into(), Hex);
    for stage in [
        bar::BootStage::Firmware,
        bar::BootStage::Choosing,
        bar::BootStage::RecoveryWaiting,
        bar::BootStage::RecoveryVerifying,
        bar::BootStage::RecoveryRefused,
        bar::BootStage::Starting,
    ] {
        define(&mut out, &format!("BPNET_BOOT_STAGE_{}", upper_snake(&format!("{stage:?}"))), stage as u64, Dec);
    }
    for request in
        [bar::HostRequest::None, bar::HostRequest::Reset, bar::HostRequest::EnterRecovery, bar::HostRequest::BootImage]
    {
        let name = format!("BPNET_HOST_REQUEST_{}", upper_snake(&format!("{request:?}")));
        define(&mut out, &name, request as u64, Dec);
    }
    define(&mut out, "BPNET_RECOVERY_ERROR_LENGTH", bar::RECOVERY_ERROR_LENGTH.into(), Hex);

    section(&mut out, "ivshmem-doorbell personality: BAR2 is the shared region");
    define(&mut out, "BPNET_IVSHMEM_AGENT_PEER", ivshmem::AGENT_PEER.into(), Dec);
    define(&mut out, "BPNET_IVSHMEM_VECTOR_WORK", ivshmem::VECTOR_WORK.into(), Dec);
    define(&mut out, "BPNET_IVSHMEM_VECTOR_STATUS", ivshmem::VECTOR_STATUS.into(), Dec);
    define(&mut out, "BPNET_IVSHMEM_VECTOR_LINK", ivshmem::VECTOR_LINK.into(), Dec);
    define(&mut out, "BPNET_IVSHMEM_VECTOR_CONTROL", ivshmem::VECTOR_CONTROL.into(), Dec);
    define(&mut out, "BPNET_IVSHMEM_VECTORS", ivshmem::VECTORS.into(), Dec);

    section(&mut out, "Host bus addresses an agent of minor version 1 reaches: [0, this); later ones say (agent_info)");
    define(&mut out, "BPNET_DMA_REACH_MINOR_1", bpnet_contract::DMA_REACH_MINOR_1, Hex);
    define(&mut out, "BPNET_DMA_REACH_MIN", bar::DMA_REACH_MIN, Hex);
    define(&mut out, "BPNET_VERSION_MINOR_AGENT_INFO", bar::VERSION_MINOR_AGENT_INFO.into(), Dec);
    define(&mut out, "BPNET_VERSION_MINOR_HEARTBEAT", bar::VERSION_MINOR_HEARTBEAT.into(), Dec);
    define(&mut out, "BPNET_VERSION_MINOR_BOARD_INFO", bar::VERSION_MINOR_BOARD_INFO.into(), Dec);
    define(&mut out, "BPNET_VERSION_MINOR_RX_MULTI_BUFFER", bar::VERSION_MINOR_RX_MULTI_BUFFER.into(), Dec);

    section(&mut out, "Counter slots in counters.slots[], u32 each, wrapping");
    for &(name, slot) in bar::COUNTERS {
        define(&mut out, &format!("BPNET_COUNTER_{}", name.to_uppercase()), slot as u64, Dec);
    }
    out.push_str("\n/* Each counter's name by slot: an array initializer (ethtool -S strings). */\n");
    out.push_str("#define BPNET_COUNTER_NAMES {");
    for &(name, _) in bar::COUNTERS {
        let _ = write!(out, "\t\\\n\t[BPNET_COUNTER_{}] = \"{name}\",", name.to_uppercase());
    }
    out.push_str("\t\\\n}\n");

    for s in STRUCTS {
        structure(&mut out, s);
    }

    out.push_str("\n#endif /* BPNET_CONTRACT_H */\n");
    out
}

/// Compare the checked-in header with what the contract generates.
pub fn check(root: &Path) -> Result<(), String> {
    let path = root.join(PATH);
    let stale = |why: String| Err(format!("{PATH} {why}: run `cargo xtask gen-header` and commit the result"));
    match fs::read_to_string(&path) {
        Ok(text) if text == generate() => Ok(()),
        Ok(_) => stale("does not match the contract".into()),
        Err(e) => stale(format!("cannot be read ({e})")),
    }
}

/// Write the generated header into the tree.
pub fn write(root: &Path) -> std::io::Result<()> {
    let path = root.join(PATH);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(path, generate())
}

/// `EnterRecovery` → `ENTER_RECOVERY`: a Rust variant's name as a C constant's.
fn upper_snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn section(out: &mut String, title: &str) {
    let _ = write!(out, "\n/* {title} */\n");
}

/// A block comment, on one line if it fits in 80 columns, else wrapped kernel style.
fn comment(out: &mut String, text: &str) {
    if text.len() + 6 <= 80 {
        let _ = writeln!(out, "/* {text} */");
        return;
    }
    out.push_str("/*\n");
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && 3 + line.len() + 1 + word.len() > 80 {
            let _ = writeln!(out, " * {line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    let _ = writeln!(out, " * {line}\n */");
}

fn define(out: &mut String, name: &str, value: u64, base: Base) {
    let head = format!("#define {name}");
    out.push_str(&head);
    pad_to(out, head.len(), VALUE_COLUMN);
    let _ = match base {
        Dec => writeln!(out, "{value}"),
        Hex => writeln!(out, "{value:#x}"),
    };
}

/// Append tabs from column `at` to column `column`, a multiple of 8 (at least one tab).
fn pad_to(out: &mut String, at: usize, column: usize) {
    let tabs = if at >= column { 1 } else { column / 8 - at / 8 };
    out.extend(std::iter::repeat_n('\t', tabs));
}

fn structure(out: &mut String, s: &Struct) {
    out.push('\n');
    comment(out, s.doc);
    let _ = writeln!(out, "struct bpnet_{} {{", s.name);
    for f in s.fields {
        let decl = match f.ty {
            Type::U8 => format!("__u8 {}", f.name),
            Type::Le16 => format!("__le16 {}", f.name),
            Type::Le32 => format!("__le32 {}", f.name),
            Type::Le64 => format!("__le64 {}", f.name),
            Type::Bytes(n) => format!("__u8 {}[{n}]", f.name),
            Type::Le32Array(n) => format!("__le32 {}[{n}]", f.name),
        };
        let _ = write!(out, "\t{decl};");
        // The tab counts as 8 columns.
        pad_to(out, 8 + decl.len() + 1, COMMENT_COLUMN);
        let _ = writeln!(out, "/* {:#04x} */", f.offset);
    }
    out.push_str("};\n\n");
    let _ = writeln!(out, "static_assert(sizeof(struct bpnet_{}) == {});", s.name, s.len);
    for f in s.fields {
        let _ = writeln!(out, "static_assert(offsetof(struct bpnet_{}, {}) == {:#04x});", s.name, f.name, f.offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask has a parent")
    }

    #[test]
    fn declares_every_struct_with_its_size() {
        let text = generate();
        for s in STRUCTS {
            assert!(text.contains(&format!("struct bpnet_{} {{\n", s.name)), "{}", s.name);
            assert!(text.contains(&format!("static_assert(sizeof(struct bpnet_{}) == {});", s.name, s.len)));
            for f in s.fields {
                assert!(text.contains(&format!("offsetof(struct bpnet_{}, {}) == {:#04x}", s.name, f.name, f.offset)));
            }
        }
        assert!(text.contains("#define BPNET_MAGIC\t\t\t\t0x544e5042\n"));
        for &(name, _) in bar::COUNTERS {
            let entry = format!("[BPNET_COUNTER_{}] = \"{name}\",", name.to_uppercase());
            assert!(text.contains(&entry), "{name}");
        }
    }

    #[test]
    fn defines_are_unique_and_guarded() {
        let text = generate();
        let mut names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("#define "))
            .map(|l| l.split(['\t', '(']).next().unwrap())
            .collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all, "a #define appears twice");
        assert!(text.starts_with("/* SPDX-License-Identifier: GPL-2.0 OR MIT */\n"));
        assert!(text.ends_with("#endif /* BPNET_CONTRACT_H */\n"));
    }

    #[test]
    fn checked_in_header_is_current() {
        check(root()).unwrap();
    }

    #[test]
    fn check_names_the_fix() {
        let err = check(Path::new("/nonexistent")).unwrap_err();
        assert!(err.contains("cargo xtask gen-header"), "{err}");
    }
}
