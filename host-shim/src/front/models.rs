//! `GET /v1/models`: the provider's catalog in OpenAI's list shape. A catalog whose discovery
//! was skipped or failed is still a list (possibly empty); its outcome is in the
//! `x-mantle-catalog-outcome` header.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::{json, Value};

use super::{errors::Surface, with_version, ApiError, FrontState};

/// The catalog as `{"object": "list", "data": [{id, object, created, owned_by}, ...]}`.
pub async fn list(state: &FrontState) -> Response {
    let swap = state.swap.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let provider = swap.provider();
        let version = mantle_host_shim::swap::version_label(provider.plugin().facts());
        provider.catalog().map(|c| (c, version))
    })
    .await;
    let (catalog, version) = match answer {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.message.to_string())
                .into_response(Surface::OpenAi)
        }
        Err(e) => {
            return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                .into_response(Surface::OpenAi)
        }
    };
    let response = (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/json".to_string(),
            ),
            (
                axum::http::HeaderName::from_static("x-mantle-catalog-outcome"),
                catalog["outcome"]["status"]
                    .as_str()
                    .unwrap_or("unknown")
                    .to_string(),
            ),
        ],
        openai_list(&catalog).to_string(),
    )
        .into_response();
    with_version(response, &version)
}

/// The catalog's models as OpenAI's list.
pub fn openai_list(catalog: &Value) -> Value {
    let data: Vec<Value> = catalog["provider"]["models"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": mantle_abi::PROVIDER_ID}))
        .collect();
    json!({"object": "list", "data": data})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_rows_become_openai_models() {
        let catalog = json!({"outcome": {"status": "ready"},
            "provider": {"models": [{"id": "openai.gpt-oss-120b", "name": "x"}, {"id": "a.b"}]}});
        assert_eq!(
            openai_list(&catalog),
            json!({"object": "list", "data": [
                {"id": "openai.gpt-oss-120b", "object": "model", "created": 0, "owned_by": "amazon-bedrock-mantle"},
                {"id": "a.b", "object": "model", "created": 0, "owned_by": "amazon-bedrock-mantle"}]})
        );
        let skipped = json!({"outcome": {"status": "skipped"}, "provider": {"models": []}});
        assert_eq!(openai_list(&skipped), json!({"object": "list", "data": []}));
    }
}
