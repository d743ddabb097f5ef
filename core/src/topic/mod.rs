//! Topics: validation of names and filters, the subscription tree used for matching, and the retained store.

mod retained;
mod tree;
mod validate;

pub use retained::RetainedTree;
pub use tree::{Subscription, SubscriptionTree, TopicMatch};
pub use validate::{parse_shared_subscription, validate_topic_filter, validate_topic_name, SharedFilter, TopicError};
