//! Amazon API Gateway Management API: `ApiGatewayConnectionPoster` posts frames to WebSocket
//! connections; `GoneException` (410) means the socket is closed.

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::error::ProvideErrorMetadata;
use aws_sdk_apigatewaymanagement::primitives::Blob;

use crate::ports::{ConnectionPoster, PostError};

#[derive(Clone, Debug)]
pub struct ApiGatewayConnectionPoster {
    client: Client,
}

impl ApiGatewayConnectionPoster {
    /// `client` must be built with the WebSocket stage's endpoint,
    /// `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl ConnectionPoster for ApiGatewayConnectionPoster {
    async fn post(&self, connection_id: &str, data: &[u8]) -> Result<(), PostError> {
        match self.client.post_to_connection().connection_id(connection_id).data(Blob::new(data)).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let gone = e.as_service_error().is_some_and(|s| s.is_gone_exception()) || e.code() == Some("GoneException");
                if gone {
                    Err(PostError::Gone)
                } else {
                    Err(PostError::Failed(aws_sdk_apigatewaymanagement::error::DisplayErrorContext(&e).to_string()))
                }
            }
        }
    }
}
