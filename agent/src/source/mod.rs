//! Node sources (see [`crate::model::NodeSource`]).

pub mod etcd;
pub mod kubernetes;
