//! Library side of the `focus` CLI: the PyTorch-parity runner, shared by the `focus parity`
//! command and the integration tests.

pub mod parity;
