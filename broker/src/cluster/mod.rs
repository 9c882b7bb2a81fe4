//! Cluster metadata: the topics this node knows and the immutable image of
//! them that request handlers read. On a single node the image is written by
//! the local [`crate::cluster::metadata::MetadataStore`]; in a cluster the
//! controller's log will feed the same image.

pub mod metadata;
pub mod topic_record;
