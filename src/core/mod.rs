//! (to be written)

pub mod apps;
