//! One table of optimizers crossed with a few problems, through one helper (as optax's
//! `alias_test.py` does): each optimizer must bring each problem near its optimum.

use burn::module::{Module, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};
use softalign_optim::{AdamConfig, AdamWConfig, AdoptConfig};

#[derive(Module, Debug)]
struct Point {
    xy: Param<Tensor<1>>,
}

/// A problem: start, loss, optimum, and how close to it every optimizer must end (AMSGrad
/// crawls along the Rosenbrock valley; the start is 2.06 away from the optimum).
struct Problem {
    name: &'static str,
    start: [f32; 2],
    loss: fn(Tensor<1>) -> Tensor<1>,
    optimum: [f32; 2],
    tolerance: f32,
}

fn parabola(xy: Tensor<1>) -> Tensor<1> {
    (xy - Tensor::<1>::from_floats([1.0, -2.0], &Device::default().autodiff()))
        .powi_scalar(2)
        .sum()
}

fn rosenbrock(xy: Tensor<1>) -> Tensor<1> {
    let x = xy.clone().slice(0..1);
    let y = xy.slice(1..2);
    (x.clone().neg() + 1.0).powi_scalar(2) + (y - x.powi_scalar(2)).powi_scalar(2).mul_scalar(100.0)
}

fn problems() -> Vec<Problem> {
    vec![
        Problem {
            name: "parabola",
            start: [3.0, 3.0],
            loss: parabola,
            optimum: [1.0, -2.0],
            tolerance: 1e-2,
        },
        Problem {
            name: "rosenbrock",
            start: [-1.0, 1.5],
            loss: rosenbrock,
            optimum: [1.0, 1.0],
            tolerance: 0.15,
        },
    ]
}

/// (name, constructor, learning rate).
type Entry = (&'static str, fn() -> ModuleOptimizer, f64);

fn optimizers() -> Vec<Entry> {
    vec![
        (
            "adopt",
            || AdoptConfig::new().with_beta_2(0.999).init(),
            2e-2,
        ),
        (
            "adopt_noclip",
            || {
                AdoptConfig::new()
                    .with_beta_2(0.999)
                    .with_clip_exponent(None)
                    .init()
            },
            2e-2,
        ),
        ("adam", || AdamConfig::new().init(), 1e-2),
        (
            "amsgrad",
            || AdamConfig::new().with_amsgrad(true).init(),
            1e-2,
        ),
        (
            "adamw",
            || AdamWConfig::new().with_weight_decay(0.0).init(),
            1e-2,
        ),
    ]
}

fn minimise(problem: &Problem, mut optim: ModuleOptimizer, lr: f64) -> [f32; 2] {
    let device = Device::default().autodiff();
    let mut point = Point {
        xy: Param::from_tensor(Tensor::from_floats(problem.start, &device).require_grad()),
    };
    for step in 0..10_000 {
        // Hold the rate, then decay it so the iterates settle rather than orbit the optimum.
        let lr = if step < 5000 {
            lr
        } else {
            lr / (1.0 + (step - 5000) as f64 / 500.0)
        };
        let grads = GradientsParams::from_grads((problem.loss)(point.xy.val()).backward(), &point);
        point = optim.step(lr, point, grads);
    }
    let values = point.xy.val().into_data().try_to_vec::<f32>().unwrap();
    [values[0], values[1]]
}

#[test]
fn every_optimizer_solves_every_problem() {
    for problem in problems() {
        for (name, optim, lr) in optimizers() {
            let [x, y] = minimise(&problem, optim(), lr);
            let distance =
                ((x - problem.optimum[0]).powi(2) + (y - problem.optimum[1]).powi(2)).sqrt();
            assert!(
                distance <= problem.tolerance,
                "{name} on {}: ended at ({x}, {y})",
                problem.name
            );
        }
    }
}
