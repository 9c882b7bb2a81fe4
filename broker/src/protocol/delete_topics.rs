//! DeleteTopics, by name (v1+) or by topic id (v6+).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{ApiKey, DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use uuid::Uuid;

use crate::broker::Broker;
use crate::error::Error;
use crate::protocol::{count_error, str_bytes, topic_name, RequestContext};
use crate::tenant::acl::operation;

pub async fn handle(
    broker: Arc<Broker>,
    context: RequestContext,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let wanted: Vec<(Option<TopicName>, Uuid)> = if context.api_version >= 6 {
        request
            .topics
            .iter()
            .map(|t| (t.name.clone(), t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|n| (Some(n.clone()), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let image = broker.image();
        let resolved = match (&name, id.is_nil()) {
            (Some(_), false) => Err(Error::api_msg(
                ResponseError::InvalidRequest,
                "give either a topic name or a topic id, not both",
            )),
            (Some(name), true) => image
                .topic(name.as_str())
                .cloned()
                .ok_or_else(|| Error::api(ResponseError::UnknownTopicOrPartition)),
            (None, false) => image
                .topic_by_id(&id)
                .cloned()
                .ok_or_else(|| Error::api(ResponseError::UnknownTopicId)),
            (None, true) => Err(Error::api_msg(
                ResponseError::InvalidRequest,
                "no topic name or id",
            )),
        };
        // DELETE on the topic (by its name, also when addressed by id).
        let outcome = match resolved {
            Ok(record) if !context.may_topic(&image, operation::DELETE, &record.name) => {
                Err(Error::api(ResponseError::TopicAuthorizationFailed))
            }
            Ok(record) => broker.delete_topic(record.name.clone()).await,
            Err(e) => match &name {
                Some(name)
                    if id.is_nil()
                        && !context.may_topic(&image, operation::DELETE, name.as_str()) =>
                {
                    Err(Error::api(ResponseError::TopicAuthorizationFailed))
                }
                _ => Err(e),
            },
        };
        let result = DeletableTopicResult::default()
            .with_name(name.clone())
            .with_topic_id(id);
        responses.push(match outcome {
            Ok(record) => result
                .with_name(Some(topic_name(&record.name)))
                .with_topic_id(record.id),
            Err(e) => {
                count_error(ApiKey::DeleteTopics, e.code());
                result
                    .with_error_code(e.code())
                    .with_error_message(e.client_message().map(|m| str_bytes(&m)))
            }
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
