//! Link the boot stage with its own memory map (linker/mpc8349emds-boot/memory.x: at 64 MiB, clear of
//! every image it starts). The trusted key comes with `bpnet-firmware`'s library, which builds it in.
include!("../../linker/link.rs");

fn main() {
    link_firmware("mpc8349emds-boot");
}
