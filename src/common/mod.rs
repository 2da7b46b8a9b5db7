//! Code shared by the three daemons.

pub mod mock_model;
