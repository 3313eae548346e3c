//! vcall end-to-end encryption: a sans-IO session state machine (see docs/SECURITY.md).
