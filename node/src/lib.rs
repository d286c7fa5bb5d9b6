//! The production node (to come): a thin tokio driver around `dynamo-model`.
