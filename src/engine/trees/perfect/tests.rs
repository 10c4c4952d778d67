use super::*;

/// Every way this CPU has to step a chunk gives what the one-turn-at-a-time step gives,
/// for inputs that fit two registers and inputs that must be gathered, NaN included.
#[test]
#[cfg(target_arch = "x86_64")]
fn simd_steps_agree_with_the_scalar_step() {
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let value = |r: u64| match r % 7 {
        0 => f32::NAN,
        1 => 0.0,
        2 => -0.0,
        _ => (r % 21) as f32 * 0.25 - 2.5,
    };
    let (mut in_registers, mut gathered) = (0, 0);
    for round in 0..200 {
        let n_inputs = 1 + next(48) as usize;
        let stride = 3;
        // Odd rounds hold category codes (0..=31) and mark some slots as masked
        // categorical splits, whose thresholds are masks.
        let codes = round % 2 == 1;
        let blocks: Vec<Block<f32>> = (0..CHUNK * stride + 8)
            .map(|_| {
                let mut b = Block::default();
                for j in 0..BLOCK_SLOTS {
                    b.t[j] = value(next(1 << 20));
                    b.s[j] = next(n_inputs as u64) as u32;
                    if codes && next(2) == 0 {
                        b.t[j] = f32::from_mask(next(1 << 32) as u32);
                        b.s[j] |= CAT_SLOT;
                    }
                }
                b
            })
            .collect();
        let xs: Vec<f32> = (0..n_inputs)
            .map(|_| {
                if codes {
                    next(32) as f32
                } else {
                    value(next(1 << 20))
                }
            })
            .collect();
        let h = 1 + (round % 3) as u32;
        let n = 1 + next(CHUNK as u64) as usize;
        let mut start: State = [0; CHUNK];
        for q in &mut start {
            *q = next(2) as u32;
        }
        // Blocks with masked splits must be stepped as such; numeric ones either way (every
        // fourth round through the steps that test for masked splits).
        let step = Step {
            blocks: &blocks,
            first: next(8) as usize,
            stride,
            h,
            n,
            masked: codes || round % 4 == 0,
        };
        let mut want = start;
        descend_scalar(step, &mut want, &xs);
        let prepared = simd::Inputs::new(&xs);
        match prepared {
            simd::Inputs::Wide(_) | simd::Inputs::Lanes(..) => in_registers += 1,
            simd::Inputs::Gather(..) => gathered += 1,
            simd::Inputs::Scalar(_) => {}
        }
        let mut got = start;
        simd::descend(step, &mut got, &prepared);
        assert_eq!(
            got[..n],
            want[..n],
            "round {round}, {n_inputs} inputs, h {h}"
        );
        if std::arch::is_x86_feature_detected!("avx2") {
            let mut got = start;
            let forced = simd::Inputs::Gather(&xs, (n_inputs - 1) as u32);
            simd::descend(step, &mut got, &forced);
            assert_eq!(got[..n], want[..n], "gathered, round {round}");
            if n_inputs <= 32 {
                let mut table = [0.0; 32];
                table[..n_inputs].copy_from_slice(&xs);
                // Four registers always agree; two only when the slots stay below 16.
                let forms: &[bool] = if n_inputs <= 16 {
                    &[true, false]
                } else {
                    &[true]
                };
                for &four in forms {
                    let mut got = start;
                    simd::descend(step, &mut got, &simd::Inputs::Lanes(table, four));
                    assert_eq!(got[..n], want[..n], "lanes ({four}), round {round}");
                }
            }
        }
    }
    if std::arch::is_x86_feature_detected!("avx2") {
        assert!(
            in_registers > 0 && gathered > 0,
            "{in_registers} in registers, {gathered} gathered"
        );
    }
}
