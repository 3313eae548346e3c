//! vcall wire format.
