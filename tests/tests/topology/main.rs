//! The operator's topology layer with real parts: `Prober` against a real primary and streaming
//! replicas (`probe`), and target resolution against the fake Kubernetes API server (`resolve`).

mod probe;
mod resolve;
