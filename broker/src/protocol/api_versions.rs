//! ApiVersions: the versions table, and the v0 answer to a too-new request.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::protocol::{versions, RequestContext};

fn api_keys() -> Vec<ApiVersion> {
    versions::SUPPORTED
        .iter()
        .map(|&(key, min, max, _)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect()
}

/// The response to a supported ApiVersions request. Tagged fields
/// (features) stay at their defaults and so are not written: old librdkafka
/// misreads tagged fields it does not know.
pub async fn handle(_context: RequestContext, _request: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_keys())
}

/// The v0 body sent when a client asks for a version we do not speak.
pub fn unsupported_version_body() -> Bytes {
    let response = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys());
    match crate::protocol::encode(&response, 0) {
        crate::protocol::Outcome::Respond(body) => body,
        _ => Bytes::new(),
    }
}
