//! No code. This package exists for its manifest: it enables, on shared third-party
//! dependencies, the same features the whole workspace enables, so building one package
//! (`cargo run -p softalign-optim --example replay`) reuses the workspace's build of burn instead
//! of compiling it again with other features. See `Cargo.toml`.
