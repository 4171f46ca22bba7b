//! Resuming with optimizer state that belongs to another model is refused: burn would attach
//! state to whichever parameter ids it names and train on silently with the wrong moments.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use softalign_optim::OptimizerKind;
use softalign_optim::checkpoint::{OPTIMIZER_FILE, load_training_state, save_training_state};

#[derive(Module, Debug)]
struct Net {
    layer: Linear,
}

fn net(width: usize, device: &Device) -> Net {
    Net {
        layer: LinearConfig::new(4, width).init(device),
    }
}

/// A checkpoint of a `width`-wide net after one optimizer step, in `dir`.
fn checkpoint(width: usize, dir: &std::path::Path, device: &Device) -> Net {
    let model = net(width, device);
    let mut optim = OptimizerKind::Adam.module_optimizer(0.0, None);
    let x = Tensor::<2>::ones([2, 4], device);
    let grads = GradientsParams::from_grads(model.layer.forward(x).sum().backward(), &model);
    let model = optim.step(1e-2, model, grads);
    save_training_state(dir, &model, &optim, |_| Ok(())).unwrap();
    model
}

#[test]
fn optimizer_state_of_a_differently_shaped_model_is_refused() {
    let device = Device::default().autodiff();
    let root = std::env::temp_dir().join(format!("softalign-foreign-{}", std::process::id()));
    let (mine, theirs) = (root.join("mine"), root.join("theirs"));
    checkpoint(3, &mine, &device);
    checkpoint(5, &theirs, &device);
    // Their optimizer state in my checkpoint: my model state still loads, theirs must not.
    std::fs::copy(theirs.join(OPTIMIZER_FILE), mine.join(OPTIMIZER_FILE)).unwrap();
    let optim = OptimizerKind::Adam.module_optimizer(0.0, None);
    let error = load_training_state(&mine, net(3, &device), optim)
        .err()
        .expect("foreign optimizer state must be refused")
        .to_string();
    std::fs::remove_dir_all(&root).unwrap();
    assert!(
        error.contains("optimizer.bpk") && error.contains("different model"),
        "{error}"
    );
}
