//! `bpnet-image`: make keys, sign, verify and show bpnet firmware images (docs/IMAGE.md).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bpnet_image::keyfile::{self, hex};
use bpnet_image::{Header, HeaderRepr, TrustedKey, HEADER_LEN_V1};
use sha2::{Digest, Sha256};

/// The MPC8349EMDS firmware region (linker/mpc8349emds/memory.x, FIRMWARE): the default RAM a
/// verified payload must fit in.
const DEFAULT_RAM: (u64, u64) = (0x0010_0000, 0x0080_0000);

const HELP: &str = "\
bpnet-image: signed firmware images for bpnet agents (format: docs/IMAGE.md)

Usage:
  bpnet-image keygen <dir>
      Make an ed25519 key pair: <dir>/dev-key.secret (mode 0600) and <dir>/dev-key.pub, each
      64 hex digits. Refuses to overwrite an existing secret.
  bpnet-image sign --key <secret> --load <addr> --entry <addr> --version <M.m.p>
                   [--security-counter <n>] <in.bin> <out.img>
      Sign a raw binary to be loaded at --load and started at --entry (0x-hex or decimal,
      multiples of 4, entry inside the payload). --security-counter (default 0) is the
      anti-rollback counter: once a board confirms an image carrying it, the board refuses
      images with a lower one. The same inputs always give the same image.
  bpnet-image verify --key <pub> [--key <pub>...] [--ram <start>..<end>] <img>
      Check an image as the agent does: header, length, payload inside the RAM range (default
      0x100000..0x800000, the board's firmware region), signed by one of the keys, payload
      SHA-256. Exit 0 only if every check passes.
  bpnet-image show <img>
      Print the header's fields, whether the header is well-formed and whether the payload
      matches its SHA-256. Checks no signature (verify does).
  bpnet-image --help

Exit status: 0 success, 1 refused or failed, 2 bad usage.
";

enum Failure {
    /// `--help` after a command: the help, exit 0.
    Help,
    Usage(String),
    Failed(String),
}

type Result<T> = std::result::Result<T, Failure>;

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::Failed(e.to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.split_first() {
        None => Err(Failure::Usage("no command given".into())),
        Some((cmd, rest)) => match cmd.as_str() {
            "-h" | "--help" | "help" => {
                print!("{HELP}");
                return ExitCode::SUCCESS;
            }
            "keygen" => keygen(rest),
            "sign" => sign(rest),
            "verify" => verify(rest),
            "show" => show(rest),
            other => Err(Failure::Usage(format!("unknown command `{other}`"))),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Help) => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(msg)) => {
            eprintln!("bpnet-image: {msg}\n\n{HELP}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(msg)) => {
            eprintln!("bpnet-image: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Options (`--name value`) and positional arguments, in order.
struct Args {
    options: Vec<(String, String)>,
    positional: Vec<String>,
}

impl Args {
    fn parse(args: &[String], known: &[&str]) -> Result<Args> {
        let mut options = Vec::new();
        let mut positional = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            if arg == "-h" || arg == "--help" {
                return Err(Failure::Help);
            }
            if let Some(name) = arg.strip_prefix("--") {
                if !known.contains(&name) {
                    return Err(Failure::Usage(format!("unknown option `{arg}`")));
                }
                let value = it.next().ok_or_else(|| Failure::Usage(format!("`{arg}` needs a value")))?;
                options.push((name.to_string(), value.clone()));
            } else {
                positional.push(arg.clone());
            }
        }
        Ok(Args { options, positional })
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.options.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }

    fn one(&self, name: &str) -> Result<Option<&str>> {
        match self.all(name)[..] {
            [] => Ok(None),
            [v] => Ok(Some(v)),
            _ => Err(Failure::Usage(format!("`--{name}` given more than once"))),
        }
    }

    fn required(&self, name: &str) -> Result<&str> {
        self.one(name)?.ok_or_else(|| Failure::Usage(format!("`--{name}` is required")))
    }

    fn positional<const N: usize>(&self, what: &str) -> Result<[&str; N]> {
        let v: Vec<&str> = self.positional.iter().map(String::as_str).collect();
        v.try_into().map_err(|_| Failure::Usage(format!("expected {what}")))
    }
}

fn number(text: &str, what: &str) -> Result<u64> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => text.replace('_', "").parse(),
    };
    parsed.map_err(|_| Failure::Usage(format!("{what} `{text}` is not a number (0x-hex or decimal)")))
}

fn address(text: &str, what: &str) -> Result<u32> {
    u32::try_from(number(text, what)?).map_err(|_| Failure::Usage(format!("{what} `{text}` is above 32 bits")))
}

/// `major.minor.patch`, each 0..=255.
fn version(text: &str) -> Result<u32> {
    let parts: Vec<&str> = text.split('.').collect();
    let bad = || Failure::Usage(format!("version `{text}` is not major.minor.patch with each part 0..=255"));
    let [major, minor, patch] = parts[..] else { return Err(bad()) };
    let part = |p: &str| p.parse::<u8>().map_err(|_| bad());
    Ok(bpnet_image::image_version(part(major)?, part(minor)?, part(patch)?))
}

fn version_text(v: u32) -> String {
    let (major, minor, patch) = bpnet_image::version_parts(v);
    format!("{major}.{minor}.{patch}")
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| failed(format!("{}: {e}", path.display())))
}

fn keygen(args: &[String]) -> Result<()> {
    let args = Args::parse(args, &[])?;
    let [dir] = args.positional("one directory")?;
    let dir = PathBuf::from(dir);
    let key = keyfile::generate(&dir).map_err(failed)?;
    let public = key.verifying_key().to_bytes();
    println!("secret key: {} (mode 0600)", dir.join(keyfile::SECRET_FILE).display());
    println!("public key: {}", dir.join(keyfile::PUBLIC_FILE).display());
    println!("public key hex: {}", hex(&public));
    println!("key id: {}", hex(&bpnet_image::key_id(&public)));
    Ok(())
}

fn sign(args: &[String]) -> Result<()> {
    let args = Args::parse(args, &["key", "load", "entry", "version", "security-counter"])?;
    let [input, output] = args.positional("an input binary and an output image")?;
    let key = keyfile::read_secret(Path::new(args.required("key")?)).map_err(failed)?;
    let load = address(args.required("load")?, "load address")?;
    let entry = address(args.required("entry")?, "entry point")?;
    let image_version = version(args.required("version")?)?;
    let counter = match args.one("security-counter")? {
        None => 0,
        Some(text) => u32::try_from(number(text, "security counter")?)
            .map_err(|_| Failure::Usage(format!("security counter `{text}` does not fit 32 bits")))?,
    };
    let payload = read(Path::new(input))?;
    let image = bpnet_image::sign_counter(&payload, load, entry, image_version, counter, &key)
        .map_err(|e| failed(format!("{input}: cannot sign: {e}")))?;
    std::fs::write(output, &image).map_err(|e| failed(format!("{output}: {e}")))?;
    println!(
        "{output}: {} bytes, payload {} bytes, version {}, security counter {counter}",
        image.len(),
        payload.len(),
        version_text(image_version)
    );
    println!("key id: {}", hex(&bpnet_image::key_id(&key.verifying_key().to_bytes())));
    Ok(())
}

fn verify(args: &[String]) -> Result<()> {
    let args = Args::parse(args, &["key", "ram"])?;
    let [path] = args.positional("one image")?;
    let keys = args.all("key");
    if keys.is_empty() {
        return Err(Failure::Usage("`--key` is required (a public key file; may be repeated)".into()));
    }
    let trusted =
        keys.iter().map(|k| keyfile::read_public(Path::new(k)).map_err(failed)).collect::<Result<Vec<TrustedKey>>>()?;
    let ram = match args.one("ram")? {
        None => DEFAULT_RAM.0..DEFAULT_RAM.1,
        Some(text) => {
            let bad = || Failure::Usage(format!("RAM range `{text}` is not <start>..<end>"));
            let (start, end) = text.split_once("..").ok_or_else(bad)?;
            number(start, "RAM start")?..number(end, "RAM end")?
        }
    };
    let image = read(Path::new(path))?;
    let verified =
        bpnet_image::verify(&image, &trusted, ram.clone()).map_err(|e| failed(format!("{path}: refused: {e}")))?;
    println!(
        "{path}: good: version {}, security counter {}, load {:#010x}, entry {:#010x}, payload {} bytes, key id {}, inside {:#x}..{:#x}",
        version_text(verified.image_version),
        verified.security_counter,
        verified.load,
        verified.entry,
        verified.payload.len(),
        hex(&verified.key_id),
        ram.start,
        ram.end
    );
    Ok(())
}

fn show(args: &[String]) -> Result<()> {
    let args = Args::parse(args, &[])?;
    let [path] = args.positional("one image")?;
    let image = read(Path::new(path))?;
    let header = Header::new_checked(&image[..]).map_err(|_| {
        failed(format!("{path}: {} bytes, shorter than a header ({HEADER_LEN_V1} bytes or more)", image.len()))
    })?;
    let magic = header.magic().to_le_bytes();
    println!("file            {path} ({} bytes)", image.len());
    println!("magic           {:#010x} ({:?})", header.magic(), String::from_utf8_lossy(&magic));
    println!("format_version  {}", header.format_version());
    println!("header_len      {}", header.header_len());
    println!("image_version   {:#010x} ({})", header.image_version(), version_text(header.image_version()));
    println!("flags           {:#010x}", header.flags());
    println!("load            {:#010x}", header.load());
    println!("entry           {:#010x}", header.entry());
    println!("payload_len     {}", header.payload_len());
    println!("payload_sha256  {}", hex(&header.payload_sha256()));
    println!("key_id          {}", hex(&header.key_id()));
    println!("security_counter {}", header.security_counter());
    println!("signature       {}", hex(&header.signature()));
    let repr = HeaderRepr::parse(&header).map_err(|e| failed(format!("{path}: header refused: {e}")))?;
    println!("header          well-formed (signature not checked: use verify)");
    let payload = &image[repr.header_len().min(image.len())..];
    if image.len() as u64 != repr.image_len() {
        return Err(failed(format!("{path}: {} bytes, the header says {}", image.len(), repr.image_len())));
    }
    if Sha256::digest(payload)[..] != repr.payload_sha256[..] {
        return Err(failed(format!("{path}: payload SHA-256 differs from the header's")));
    }
    println!("payload         matches payload_sha256");
    Ok(())
}
