//! The fused kernels equal the scalar reference on random data, for odd lengths (the vector
//! tails and the chunk boundaries) and for one and two threads.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use softalign_optim::coefficients::{AdamHyper, AdoptHyper};
use softalign_optim::kernel;
use softalign_optim::reference::{self, ReferenceState};

const LENGTHS: [usize; 5] = [1, 7, 1023, 65_537, 100_003];

fn random(len: usize, scale: f32, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-scale..scale)).collect()
}

fn adopt_hypers() -> Vec<AdoptHyper> {
    let base = AdoptHyper {
        lr: 1e-2,
        beta_1: 0.9,
        beta_2: 0.9999,
        epsilon: 1e-6,
        clip_exponent: Some(0.25),
        weight_decay: 0.0,
        decoupled: false,
    };
    vec![
        base,
        AdoptHyper {
            clip_exponent: None,
            ..base
        },
        AdoptHyper {
            weight_decay: 0.1,
            decoupled: true,
            ..base
        },
        AdoptHyper {
            weight_decay: 0.1,
            decoupled: false,
            beta_1: 0.3,
            ..base
        },
    ]
}

fn adam_hypers() -> Vec<AdamHyper> {
    let base = AdamHyper {
        lr: 1e-3,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
        amsgrad: false,
    };
    vec![
        base,
        AdamHyper {
            weight_decay: 0.01,
            decoupled: true,
            ..base
        },
        AdamHyper {
            weight_decay: 0.01,
            amsgrad: true,
            ..base
        },
        AdamHyper {
            beta_1: 0.6,
            ..base
        },
    ]
}

fn in_pool<R: Send>(threads: usize, work: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(work)
}

#[test]
fn fused_adopt_equals_the_scalar_reference() {
    for threads in [1, 2] {
        for hyper in adopt_hypers() {
            for len in LENGTHS {
                let mut rng = ChaCha8Rng::seed_from_u64(len as u64);
                let mut theta = random(len, 1.0, &mut rng);
                let (mut m, mut v) = (vec![0.0; len], vec![0.0; len]);
                let mut want = theta.clone();
                let mut state = ReferenceState::new(len, false);
                for step in 0..4 {
                    let grad = random(len, 2.0, &mut rng);
                    in_pool(threads, || {
                        let scalars = hyper.scalars::<f32>(step.max(1));
                        if step == 0 {
                            kernel::adopt_first_step(
                                &theta,
                                &grad,
                                &mut v,
                                hyper.l2().then_some(scalars.l2_penalty),
                            );
                        } else {
                            let clip = hyper.clip_exponent.is_some();
                            kernel::adopt_step(
                                &mut theta,
                                &grad,
                                &mut m,
                                &mut v,
                                &scalars,
                                hyper.l2(),
                                hyper.decoupled_decay(),
                                clip,
                            );
                        }
                    });
                    reference::adopt(&hyper, &mut want, &grad, &mut state);
                    assert_eq!(
                        theta, want,
                        "θ, len {len}, step {step}, {threads} threads, {hyper:?}"
                    );
                    assert_eq!(m, state.m, "m, len {len}, step {step}");
                    assert_eq!(v, state.v, "v, len {len}, step {step}");
                }
            }
        }
    }
}

#[test]
fn fused_adam_equals_the_scalar_reference() {
    for threads in [1, 2] {
        for hyper in adam_hypers() {
            for len in LENGTHS {
                let mut rng = ChaCha8Rng::seed_from_u64(len as u64 + 7);
                let mut theta = random(len, 1.0, &mut rng);
                let (mut m, mut v) = (vec![0.0; len], vec![0.0; len]);
                let mut v_max = hyper.amsgrad.then(|| vec![0.0; len]);
                let mut want = theta.clone();
                let mut state = ReferenceState::new(len, hyper.amsgrad);
                for step in 1..=4 {
                    // Shrinking gradients make AMSGrad's maximum differ from v.
                    let grad = random(len, 2.0 / step as f32, &mut rng);
                    in_pool(threads, || {
                        let scalars = hyper.scalars::<f32>(step);
                        kernel::adam_step(
                            &mut theta,
                            &grad,
                            &mut m,
                            &mut v,
                            v_max.as_deref_mut(),
                            &scalars,
                            hyper.l2(),
                            hyper.decoupled_decay(),
                        );
                    });
                    reference::adam(&hyper, &mut want, &grad, &mut state);
                    assert_eq!(
                        theta, want,
                        "θ, len {len}, step {step}, {threads} threads, {hyper:?}"
                    );
                    assert_eq!(m, state.m);
                    assert_eq!(v, state.v);
                    assert_eq!(v_max, state.v_max);
                }
            }
        }
    }
}

#[test]
fn adopt_epsilon_is_a_floor_not_an_addend() {
    // With v = 0 after a zero first gradient, √v = 0 < ε, so n = g/ε (clipped at t^0.25 = 1).
    let hyper = AdoptHyper {
        lr: 1.0,
        beta_1: 0.0,
        beta_2: 0.5,
        epsilon: 0.5,
        clip_exponent: None,
        weight_decay: 0.0,
        decoupled: false,
    };
    let mut theta = vec![0.0_f64, 0.0];
    let mut state = ReferenceState::new(2, false);
    reference::adopt(&hyper, &mut theta, &[0.0, 0.0], &mut state);
    assert_eq!(theta, [0.0, 0.0], "the first step leaves θ alone");
    reference::adopt(&hyper, &mut theta, &[1.0, 0.25], &mut state);
    assert_eq!(theta, [-2.0, -0.5]);
    // Now v = 0.5·g², and the next step divides by max(√v, ε).
    reference::adopt(&hyper, &mut theta, &[1.0, 1.0], &mut state);
    let root = 0.5_f64.sqrt();
    assert_eq!(theta, [-2.0 - 1.0 / root, -0.5 - 1.0 / 0.5]);
}
