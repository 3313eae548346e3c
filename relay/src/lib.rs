//! vcall relay: room logic (`rooms`) and its quinn/tokio shell.
