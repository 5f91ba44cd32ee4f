//! SHA-1 (FIPS 180-4), for the DBUS_COOKIE_SHA1 authentication mechanism only.
//!
//! SHA-1 is broken for collision resistance, but DBUS_COOKIE_SHA1 uses it as the specification
//! requires: to prove knowledge of a secret cookie against fresh random challenges, where only
//! preimage resistance matters. Nothing else in tram may use it.

/// The length of a digest in bytes.
pub(crate) const DIGEST_LEN: usize = 20;

/// The SHA-1 digest of `data`.
pub(crate) fn digest(data: &[u8]) -> [u8; DIGEST_LEN] {
    let mut state: [u32; 5] = [
        0x6745_2301,
        0xefcd_ab89,
        0x98ba_dcfe,
        0x1032_5476,
        0xc3d2_e1f0,
    ];
    let mut blocks = data.chunks_exact(64);
    for block in &mut blocks {
        compress(&mut state, block);
    }
    // The padding: 0x80, zeros, and the message length in bits, big-endian, to a block end.
    let rest = blocks.remainder();
    let mut tail = [0u8; 128];
    let tail_len = if rest.len() < 56 { 64 } else { 128 };
    if let Some(dst) = tail.get_mut(..rest.len()) {
        dst.copy_from_slice(rest);
    }
    if let Some(b) = tail.get_mut(rest.len()) {
        *b = 0x80;
    }
    let bits = (data.len() as u64).wrapping_mul(8);
    if let Some(dst) = tail.get_mut(tail_len - 8..tail_len) {
        dst.copy_from_slice(&bits.to_be_bytes());
    }
    for block in tail.get(..tail_len).unwrap_or_default().chunks_exact(64) {
        compress(&mut state, block);
    }
    let mut out = [0u8; DIGEST_LEN];
    for (dst, word) in out.chunks_exact_mut(4).zip(state) {
        dst.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Processes one 64-byte block.
fn compress(state: &mut [u32; 5], block: &[u8]) {
    let mut w = [0u32; 80];
    for (dst, word) in w.iter_mut().zip(block.chunks_exact(4)) {
        *dst = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
    }
    for i in 16..80 {
        w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
    }
    let [mut a, mut b, mut c, mut d, mut e] = *state;
    for (i, &wi) in w.iter().enumerate() {
        let (f, k) = match i {
            0..=19 => ((b & c) | (!b & d), 0x5a82_7999),
            20..=39 => (b ^ c ^ d, 0x6ed9_eba1),
            40..=59 => ((b & c) | (b & d) | (c & d), 0x8f1b_bcdc),
            _ => (b ^ c ^ d, 0xca62_c1d6),
        };
        let t = a
            .rotate_left(5)
            .wrapping_add(f)
            .wrapping_add(e)
            .wrapping_add(k)
            .wrapping_add(wi);
        e = d;
        d = c;
        c = b.rotate_left(30);
        b = a;
        a = t;
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e]) {
        *s = s.wrapping_add(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn fips_180_and_rfc_3174_vectors() {
        let million_a = vec![b'a'; 1_000_000];
        let cases: &[(&[u8], &str)] = &[
            (b"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            (b"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "84983e441c3bd26ebaae4aa1f95129e5e54670f1",
            ),
            (
                b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn\
                  hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
                "a49b2446a02c645bf419f995b67091253a04a259",
            ),
            (
                b"The quick brown fox jumps over the lazy dog",
                "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",
            ),
            (&million_a, "34aa973cd4c4daa4f61eeb2bdbad27316534016f"),
        ];
        for (input, want) in cases {
            assert_eq!(hex(&digest(input)), *want, "{} bytes", input.len());
        }
    }

    #[test]
    fn padding_boundaries() {
        // Lengths around the 55/56/64-byte padding edges, checked against sha1sum.
        let cases: &[(usize, &str)] = &[
            (55, "c1c8bbdc22796e28c0e15163d20899b65621d65a"),
            (56, "c2db330f6083854c99d4b5bfb6e8f29f201be699"),
            (63, "03f09f5b158a7a8cdad920bddc29b81c18a551f5"),
            (64, "0098ba824b5c16427bd7a1122a5a442a25ec644d"),
            (65, "11655326c708d70319be2610e8a57d9a5b959d3b"),
        ];
        for &(len, want) in cases {
            assert_eq!(hex(&digest(&vec![b'a'; len])), want, "{len} bytes");
        }
    }
}
