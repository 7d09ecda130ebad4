//! Node sources (see [`crate::model::NodeSource`]).
