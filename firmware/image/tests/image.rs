//! The image format against its documentation and against hostile bytes. Runs on x86 and on
//! big-endian PowerPC (qemu-ppc): nothing here depends on the host's byte order.
//!
//! Signing is exercised through the library's `sign` when the feature is on; without it (the plain
//! `cargo test` of a no_std consumer) the tests sign with ed25519-dalek directly, following the
//! documented layout, which also checks that the documentation is enough to write an image.

use bpnet_image::{
    image_len, key_id, verify, Error, Header, HeaderRepr, TrustedKey, Verified, HEADER_LEN, KEY_ID_LEN, MAGIC,
    SIGNED_LEN,
};
use ed25519_dalek::{Signer, SigningKey};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

const RAM: core::ops::Range<u64> = 0x0010_0000..0x0080_0000;
const LOAD: u32 = 0x0010_0000;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn trusted(key: &SigningKey) -> TrustedKey {
    TrustedKey::from_bytes(&key.verifying_key().to_bytes()).unwrap()
}

/// An image built by hand from the documented table (format 2), independently of the crate's emit.
fn sign_by_the_table(payload: &[u8], load: u32, entry: u32, version: u32, counter: u32, key: &SigningKey) -> Vec<u8> {
    let mut image = vec![0u8; 0x88 + payload.len()];
    image[0x00..0x04].copy_from_slice(b"BPIM");
    image[0x04..0x06].copy_from_slice(&2u16.to_le_bytes());
    image[0x06..0x08].copy_from_slice(&0x88u16.to_le_bytes());
    image[0x08..0x0C].copy_from_slice(&version.to_le_bytes());
    image[0x10..0x14].copy_from_slice(&load.to_le_bytes());
    image[0x14..0x18].copy_from_slice(&entry.to_le_bytes());
    image[0x18..0x1C].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    image[0x1C..0x3C].copy_from_slice(&Sha256::digest(payload));
    image[0x3C..0x44].copy_from_slice(&Sha256::digest(key.verifying_key().to_bytes())[..8]);
    image[0x44..0x48].copy_from_slice(&counter.to_le_bytes());
    let signature = key.sign(&image[0x00..0x48]).to_bytes();
    image[0x48..0x88].copy_from_slice(&signature);
    image[0x88..].copy_from_slice(payload);
    image
}

/// A format-1 image (no security counter), as older tools wrote them, by the table.
fn sign_v1_by_the_table(payload: &[u8], load: u32, entry: u32, version: u32, key: &SigningKey) -> Vec<u8> {
    let mut image = vec![0u8; 0x84 + payload.len()];
    image[0x00..0x04].copy_from_slice(b"BPIM");
    image[0x04..0x06].copy_from_slice(&1u16.to_le_bytes());
    image[0x06..0x08].copy_from_slice(&0x84u16.to_le_bytes());
    image[0x08..0x0C].copy_from_slice(&version.to_le_bytes());
    image[0x10..0x14].copy_from_slice(&load.to_le_bytes());
    image[0x14..0x18].copy_from_slice(&entry.to_le_bytes());
    image[0x18..0x1C].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    image[0x1C..0x3C].copy_from_slice(&Sha256::digest(payload));
    image[0x3C..0x44].copy_from_slice(&Sha256::digest(key.verifying_key().to_bytes())[..8]);
    let signature = key.sign(&image[0x00..0x44]).to_bytes();
    image[0x44..0x84].copy_from_slice(&signature);
    image[0x84..].copy_from_slice(payload);
    image
}

fn signed(payload: &[u8], load: u32, entry: u32, version: u32, key: &SigningKey) -> Vec<u8> {
    signed_counter(payload, load, entry, version, 0, key)
}

fn signed_counter(payload: &[u8], load: u32, entry: u32, version: u32, counter: u32, key: &SigningKey) -> Vec<u8> {
    let by_hand = sign_by_the_table(payload, load, entry, version, counter, key);
    #[cfg(feature = "sign")]
    {
        let by_crate = bpnet_image::sign_counter(payload, load, entry, version, counter, key).unwrap();
        assert_eq!(by_crate, by_hand, "sign_counter() and the documented layout disagree");
        if counter == 0 {
            assert_eq!(bpnet_image::sign(payload, load, entry, version, key).unwrap(), by_hand);
        }
    }
    by_hand
}

#[test]
fn security_counter_is_signed_and_a_format_1_image_has_counter_0() {
    let payload: Vec<u8> = (0..100u32).map(|i| i as u8).collect();
    let k = key(9);
    let keys = [trusted(&k)];
    let image = signed_counter(&payload, LOAD, LOAD, 0x0001_0000, 0x1234_5678, &k);
    let v = verify(&image, &keys, RAM).unwrap();
    assert_eq!(v.security_counter, 0x1234_5678);
    assert_eq!(Header::new_checked(&image[..]).unwrap().security_counter(), 0x1234_5678);
    // Raising the counter without the key breaks the signature.
    let mut raised = image.clone();
    raised[0x44] ^= 0x80;
    assert_eq!(verify(&raised, &keys, RAM), Err(Error::BadSignature));
    // An old-format image: still read, its counter 0, its payload at 0x84.
    let old = sign_v1_by_the_table(&payload, LOAD, LOAD, 0x0001_0000, &k);
    let v = verify(&old, &keys, RAM).unwrap();
    assert_eq!((v.security_counter, v.payload), (0, &payload[..]));
    assert_eq!(image_len(&old), Ok(0x84 + 100));
    let h = Header::new_checked(&old[..]).unwrap();
    assert_eq!((h.format_version(), h.header_len(), h.security_counter()), (1, 0x84, 0));
    assert_eq!(h.signed_bytes(), &old[..0x44]);
    #[cfg(feature = "sign")]
    {
        let by_crate = bpnet_image::sign_with(&payload, LOAD, LOAD, 0x0001_0000, 0, 1, &k).unwrap();
        assert_eq!(by_crate, old, "format 1 by the crate and by the table");
        assert_eq!(
            bpnet_image::sign_with(&payload, LOAD, LOAD, 0x0001_0000, 1, 1, &k),
            Err(Error::BadFormatVersion(1)),
            "format 1 cannot carry a counter"
        );
    }
    // The anti-rollback check: at or above the minimum passes, below it is refused by name.
    let v = verify(&image, &keys, RAM).unwrap();
    assert_eq!(bpnet_image::check_security_counter(&v, 0x1234_5678), Ok(()));
    assert_eq!(
        bpnet_image::check_security_counter(&v, 0x1234_5679),
        Err(Error::Rollback { counter: 0x1234_5678, minimum: 0x1234_5679 })
    );
    let v1 = verify(&old, &keys, RAM).unwrap();
    assert_eq!(bpnet_image::check_security_counter(&v1, 0), Ok(()));
    assert_eq!(bpnet_image::check_security_counter(&v1, 1), Err(Error::Rollback { counter: 0, minimum: 1 }));
    assert!(Error::Rollback { counter: 1, minimum: 2 }.to_string().contains("downgrade refused"));
    // A format-1 header is shorter: a format-1 image cut to 0x84 bytes still has its whole header,
    // a format-2 one does not.
    assert_eq!(Header::new_checked(&image[..0x87]).err(), Some(Error::Truncated));
    assert!(Header::new_checked(&old[..0x84]).is_ok());
    // The format decides the header length: a format-2 header claiming format 1 is refused.
    let mut relabelled = image.clone();
    relabelled[4..6].copy_from_slice(&1u16.to_le_bytes());
    assert_eq!(verify(&relabelled, &keys, RAM), Err(Error::BadHeaderLen(0x88)));
}

#[test]
fn documented_layout_verifies() {
    let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
    let k = key(1);
    let version = bpnet_image::image_version(0, 1, 2);
    let image = signed(&payload, LOAD, LOAD + 0x40, version, &k);
    let v = verify(&image, &[trusted(&k)], RAM).unwrap();
    assert_eq!(
        v,
        Verified {
            image_version: 0x0000_0102,
            security_counter: 0,
            flags: 0,
            load: LOAD,
            entry: LOAD + 0x40,
            key_id: key_id(&k.verifying_key().to_bytes()),
            payload: &payload[..],
        }
    );
    assert_eq!(MAGIC.to_le_bytes(), *b"BPIM");
    assert_eq!((HEADER_LEN, SIGNED_LEN), (0x88, 0x48));
    assert_eq!(image_len(&image), Ok(image.len() as u64));
}

#[test]
fn view_reads_every_field() {
    let k = key(2);
    let payload = [0xA5u8; 12];
    let image = signed_counter(&payload, 0x0020_0000, 0x0020_0008, bpnet_image::image_version(3, 4, 5), 77, &k);
    let h = Header::new_checked(&image[..]).unwrap();
    assert_eq!(h.magic(), u32::from_le_bytes(*b"BPIM"));
    assert_eq!((h.format_version(), h.header_len(), h.security_counter()), (2, 0x88, 77));
    assert_eq!(h.image_version(), 0x0003_0405);
    assert_eq!((h.flags(), h.load(), h.entry(), h.payload_len()), (0, 0x0020_0000, 0x0020_0008, 12));
    assert_eq!(h.payload_sha256()[..], Sha256::digest(payload)[..]);
    assert_eq!(h.key_id(), key_id(&k.verifying_key().to_bytes()));
    assert_eq!(h.signed_bytes(), &image[..0x48]);
    assert_eq!(h.signature()[..], image[0x48..0x88]);
    // The repr round-trips through emit.
    let repr = HeaderRepr::parse(&h).unwrap();
    let mut again = [0u8; HEADER_LEN];
    repr.emit(&mut again).unwrap();
    assert_eq!(again[..], image[..HEADER_LEN]);
}

#[test]
fn every_single_bit_flip_is_refused_with_the_right_error() {
    let k = key(3);
    let payload: Vec<u8> = (0..24u8).collect();
    let image = signed(&payload, LOAD, LOAD, bpnet_image::image_version(1, 0, 0), &k);
    let keys = [trusted(&k)];
    for bit in 0..image.len() * 8 {
        let mut bad = image.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let at = bit / 8;
        let err = verify(&bad, &keys, RAM).expect_err("a flipped image verified");
        match at {
            0x3C..=0x43 => assert!(matches!(err, Error::UnknownKey(_)), "key id byte {at:#x}: {err:?}"),
            // The security counter is signed.
            0x44..=0x47 => assert_eq!(err, Error::BadSignature, "counter byte {at:#x}"),
            0x48..=0x87 => assert_eq!(err, Error::BadSignature, "signature byte {at:#x}"),
            0x88.. => assert_eq!(err, Error::BadPayloadHash, "payload byte {at:#x}"),
            // The payload's hash is signed: changing it breaks the signature.
            0x1C..=0x3B => assert_eq!(err, Error::BadSignature, "hash byte {at:#x}"),
            _ => {}
        }
    }
}

#[test]
fn each_header_check_names_its_failure() {
    let k = key(4);
    let keys = [trusted(&k)];
    let payload = [0u8; 64];
    let v = bpnet_image::image_version(0, 1, 0);
    let image = signed(&payload, LOAD, LOAD, v, &k);
    // Verified borrows the image: compare the payload's length in its place.
    let with = |at: usize, bytes: &[u8]| {
        let mut bad = image.clone();
        bad[at..at + bytes.len()].copy_from_slice(bytes);
        verify(&bad, &keys, RAM).map(|v| v.payload.len())
    };
    assert_eq!(with(0, b"BPIX"), Err(Error::BadMagic(u32::from_le_bytes(*b"BPIX"))));
    assert_eq!(with(0, &[0xFF; 4]), Err(Error::BadMagic(u32::MAX)));
    assert_eq!(with(4, &3u16.to_le_bytes()), Err(Error::BadFormatVersion(3)));
    assert_eq!(with(6, &0x100u16.to_le_bytes()), Err(Error::BadHeaderLen(0x100)));
    assert_eq!(with(8, &0x0100_0000u32.to_le_bytes()), Err(Error::BadImageVersion(0x0100_0000)));
    assert_eq!(with(0xC, &0x8000_0000u32.to_le_bytes()), Err(Error::BadFlags(0x8000_0000)));
    assert_eq!(with(0x18, &0u32.to_le_bytes()), Err(Error::EmptyPayload));
    assert_eq!(with(0x14, &(LOAD + 2).to_le_bytes()), Err(Error::Misaligned(LOAD + 2)));
    assert_eq!(with(0x10, &(LOAD + 1).to_le_bytes()), Err(Error::Misaligned(LOAD + 1)));
    assert_eq!(
        with(0x14, &(LOAD + 64).to_le_bytes()),
        Err(Error::EntryOutsidePayload { entry: LOAD + 64, load: LOAD, payload_len: 64 })
    );
    assert_eq!(
        with(0x14, &(LOAD - 4).to_le_bytes()),
        Err(Error::EntryOutsidePayload { entry: LOAD - 4, load: LOAD, payload_len: 64 })
    );
    assert_eq!(with(0x18, &65u32.to_le_bytes()), Err(Error::BadImageLen { expected: 0x88 + 65, actual: 0x88 + 64 }));
    // The payload must lie wholly inside the RAM range, ends included.
    let end = RAM.end as u32;
    let at_top = signed(&payload, end - 64, end - 64, v, &k);
    assert!(verify(&at_top, &keys, RAM).is_ok());
    let past_top = signed(&payload, end - 60, end - 60, v, &k);
    assert_eq!(verify(&past_top, &keys, RAM), Err(Error::OutsideRam { load: end - 60, payload_len: 64 }));
    let below = signed(&payload, LOAD - 4, LOAD - 4, v, &k);
    assert_eq!(verify(&below, &keys, RAM), Err(Error::OutsideRam { load: LOAD - 4, payload_len: 64 }));
    // Near 4 GiB the end does not wrap into the range.
    let wraps = signed(&payload, 0xFFFF_FFE0, 0xFFFF_FFE0, v, &k);
    assert_eq!(verify(&wraps, &keys, 0..0x1_0000_0000), Err(Error::OutsideRam { load: 0xFFFF_FFE0, payload_len: 64 }));
    // A valid image from a key not trusted; then trusted among others.
    let other = key(5);
    let foreign = signed(&payload, LOAD, LOAD, v, &other);
    assert_eq!(verify(&foreign, &keys, RAM), Err(Error::UnknownKey(key_id(&other.verifying_key().to_bytes()))));
    assert!(verify(&foreign, &[trusted(&k), trusted(&other)], RAM).is_ok());
    assert!(verify(&image, &[], RAM).is_err());
    // A foreign signature under our key id: the id selects, the signature decides.
    let mut forged = foreign.clone();
    forged[0x3C..0x44].copy_from_slice(&keys[0].id());
    let signature = other.sign(&forged[..0x48]).to_bytes();
    forged[0x48..0x88].copy_from_slice(&signature);
    assert_eq!(verify(&forged, &keys, RAM), Err(Error::BadSignature));
    // Trailing bytes are not part of the image.
    let mut longer = image.clone();
    longer.push(0);
    assert_eq!(verify(&longer, &keys, RAM), Err(Error::BadImageLen { expected: 0x88 + 64, actual: 0x88 + 65 }));
    assert_eq!(image_len(&longer), Ok(0x88 + 64));
    assert!(verify(&longer[..image_len(&longer).unwrap() as usize], &keys, RAM).is_ok());
}

#[test]
fn trusted_keys_refuse_bad_points_and_weak_keys() {
    // The identity point (y = 1): small order, every signature would verify under it.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(TrustedKey::from_bytes(&identity), Err(Error::BadKey));
    // y = 2 is not on the curve.
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    assert_eq!(TrustedKey::from_bytes(&not_a_point), Err(Error::BadKey));
    let k = key(6);
    let hex: String = k.verifying_key().to_bytes().iter().map(|b| format!("{b:02X}")).collect();
    assert_eq!(TrustedKey::from_hex(&hex), Ok(trusted(&k)));
    assert_eq!(trusted(&k).to_bytes(), k.verifying_key().to_bytes());
    assert_eq!(TrustedKey::from_hex(&hex[1..]), Err(Error::BadKey));
    assert_eq!(bpnet_image::key_from_hex(&format!("{}g", &hex[1..])), None);
    assert_eq!(trusted(&k).id().len(), KEY_ID_LEN);
}

#[test]
fn emit_refuses_what_parse_refuses() {
    let good = HeaderRepr {
        format_version: bpnet_image::FORMAT_VERSION,
        image_version: 1,
        security_counter: 3,
        flags: 0,
        load: LOAD,
        entry: LOAD,
        payload_len: 4,
        payload_sha256: [0; 32],
        key_id: [0; 8],
        signature: [0; 64],
    };
    let mut buf = [0u8; HEADER_LEN];
    assert_eq!(good.emit(&mut buf[..HEADER_LEN - 1]), Err(Error::Truncated));
    assert_eq!(HeaderRepr { flags: 1, ..good }.emit(&mut buf), Err(Error::BadFlags(1)));
    assert_eq!(HeaderRepr { payload_len: 0, ..good }.emit(&mut buf), Err(Error::EmptyPayload));
    assert_eq!(
        HeaderRepr { entry: LOAD + 4, ..good }.emit(&mut buf),
        Err(Error::EntryOutsidePayload { entry: LOAD + 4, load: LOAD, payload_len: 4 })
    );
    assert!(good.emit(&mut buf).is_ok());
    assert_eq!(HeaderRepr::parse(&Header::new_checked(&buf[..]).unwrap()), Ok(good));
}

#[cfg(feature = "sign")]
#[test]
fn sign_is_reproducible_and_refuses_bad_headers() {
    let k = key(7);
    let payload = b"deterministic";
    let padded = [&payload[..], &[0u8; 3]].concat();
    let a = bpnet_image::sign(&padded, LOAD, LOAD, 1, &k).unwrap();
    assert_eq!(a, bpnet_image::sign(&padded, LOAD, LOAD, 1, &k).unwrap());
    assert_ne!(a, bpnet_image::sign(&padded, LOAD, LOAD, 2, &k).unwrap());
    assert_eq!(bpnet_image::sign(&[], LOAD, LOAD, 1, &k), Err(Error::EmptyPayload));
    assert_eq!(bpnet_image::sign(&padded, LOAD, LOAD + 2, 1, &k), Err(Error::Misaligned(LOAD + 2)));
    assert_eq!(
        bpnet_image::sign(&padded, LOAD, 0, 1, &k),
        Err(Error::EntryOutsidePayload { entry: 0, load: LOAD, payload_len: 16 })
    );
}

proptest! {
    // Each case signs once; the cases stay few enough for qemu-ppc.
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let k = trusted(&key(8));
        prop_assert!(verify(&bytes, &[k], 0..u64::MAX).is_err());
        let _ = image_len(&bytes);
        if let Ok(h) = Header::new_checked(&bytes[..]) {
            let _ = HeaderRepr::parse(&h);
        }
    }

    #[test]
    fn a_valid_header_with_arbitrary_fields_never_panics(
        payload in proptest::collection::vec(any::<u8>(), 1..64),
        fields in proptest::collection::vec(any::<u8>(), 0x1C),
        cut in any::<usize>(),
    ) {
        // A header whose first 0x1C bytes are arbitrary but magic, format and length are right
        // reaches the value checks; a cut anywhere reaches the length checks.
        let k = key(9);
        let mut image = signed(&payload, LOAD, LOAD, 1, &k);
        let unchanged = image[0x08..0x1C] == fields[0x08..0x1C];
        image[0x08..0x1C].copy_from_slice(&fields[0x08..0x1C]);
        // Any change to a signed field is refused, whichever check catches it.
        prop_assert_eq!(verify(&image, &[trusted(&k)], 0..u64::MAX).is_ok(), unchanged);
        let cut = cut % (image.len() + 1);
        let _ = verify(&image[..cut], &[trusted(&k)], 0..u64::MAX);
    }

    #[test]
    fn any_single_bit_flip_is_refused(
        payload in proptest::collection::vec(any::<u8>(), 1..2048),
        offset in 0u32..0x1000,
        bit in any::<usize>(),
    ) {
        let k = key(10);
        let load = LOAD + offset * 4;
        let image = signed(&payload, load, load, bpnet_image::image_version(0, 1, 0), &k);
        prop_assert!(verify(&image, &[trusted(&k)], RAM).is_ok());
        let bit = bit % (image.len() * 8);
        let mut bad = image.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(verify(&bad, &[trusted(&k)], RAM).is_err());
    }

    #[test]
    fn truncated_or_extended_images_are_refused(
        payload in proptest::collection::vec(any::<u8>(), 1..2048),
        cut in any::<usize>(),
        extra in proptest::collection::vec(any::<u8>(), 1..16),
    ) {
        let k = key(11);
        let image = signed(&payload, LOAD, LOAD, 1, &k);
        let cut = cut % image.len();
        let keys = [trusted(&k)];
        let err = verify(&image[..cut], &keys, RAM).unwrap_err();
        if cut < HEADER_LEN {
            prop_assert_eq!(err, Error::Truncated);
        } else {
            prop_assert_eq!(err, Error::BadImageLen { expected: image.len() as u64, actual: cut as u64 });
        }
        let longer = [&image[..], &extra[..]].concat();
        let extended = matches!(verify(&longer, &keys, RAM), Err(Error::BadImageLen { .. }));
        prop_assert!(extended);
    }
}

#[test]
fn error_codes_are_distinct_and_named() {
    let every = [
        Error::Truncated,
        Error::BadMagic(0),
        Error::BadFormatVersion(0),
        Error::BadHeaderLen(0),
        Error::BadImageVersion(0),
        Error::BadFlags(0),
        Error::EmptyPayload,
        Error::Misaligned(0),
        Error::EntryOutsidePayload { entry: 0, load: 0, payload_len: 0 },
        Error::BadImageLen { expected: 0, actual: 0 },
        Error::OutsideRam { load: 0, payload_len: 0 },
        Error::UnknownKey([0; KEY_ID_LEN]),
        Error::BadSignature,
        Error::BadPayloadHash,
        Error::BadKey,
        Error::PayloadTooLong,
        Error::Rollback { counter: 0, minimum: 1 },
    ];
    // The numbers travel in the boot block: they are part of the format and must not move.
    let codes: Vec<u32> = every.iter().map(Error::code).collect();
    assert_eq!(codes, (1..=17).collect::<Vec<u32>>());
    for e in &every {
        assert!(Error::code_name(e.code()).is_some_and(|name| !name.is_empty()), "{e:?}");
    }
    assert_eq!(Error::code_name(Error::BadSignature.code()), Some("bad signature"));
    assert_eq!(Error::code_name(0), None);
    assert_eq!(Error::code_name(18), None);
    assert_eq!(Error::code_name(u32::MAX), None);
}
