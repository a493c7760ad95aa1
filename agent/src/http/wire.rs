//! MLflow's JSON conventions for requests: GET parameters in the query string, POST bodies as
//! JSON, int64 and double fields as numbers or strings (`"NaN"`, `"Infinity"`), unknown fields
//! ignored, and an error that names the field when one is missing or malformed.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde_json::{Map, Value};

use super::error_response;

/// A request's parameters, from the query string (GET) or the JSON body (anything else).
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Params<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        if request.method() == Method::GET {
            let value = query_object(request.uri().query().unwrap_or_default());
            return serde_path_to_error::deserialize(value)
                .map(Params)
                .map_err(|e| {
                    let path = e.path().to_string();
                    parameter_error(&path, &e.into_inner().to_string())
                });
        }
        let body = Bytes::from_request(request, state).await.map_err(|e| {
            error_response(
                StatusCode::BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                &e.to_string(),
            )
        })?;
        let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &body
        };
        // Straight from the bytes: a 1,000-metric batch is not built as a JSON tree first.
        let mut json = serde_json::Deserializer::from_slice(body);
        let parsed = serde_path_to_error::deserialize(&mut json).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                invalid(&format!("the request body is not valid JSON: {inner}"))
            } else {
                parameter_error(&path, &inner.to_string())
            }
        })?;
        json.end()
            .map_err(|e| invalid(&format!("the request body is not valid JSON: {e}")))?;
        Ok(Params(parsed))
    }
}

fn parameter_error(path: &str, message: &str) -> Response {
    if path == "." || path.is_empty() {
        invalid(message)
    } else {
        invalid(&format!("invalid value for parameter '{path}': {message}"))
    }
}

pub fn invalid(message: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", message)
}

/// Query pairs as a JSON object; a repeated key becomes an array, as protobuf's repeated
/// fields expect.
fn query_object(query: &str) -> Value {
    let mut object = Map::new();
    for (key, value) in form_urlencoded_pairs(query) {
        match object.get_mut(&key) {
            Some(Value::Array(items)) => items.push(Value::String(value)),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, Value::String(value)]);
            }
            None => {
                object.insert(key, Value::String(value));
            }
        }
    }
    Value::Object(object)
}

fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query).unwrap_or_default()
}

/// A JSON number or string, read without buffering: an untagged enum would buffer every value
/// and build an error message for each variant that does not fit (a float is not an `i64`),
/// which is most of parsing a thousand metrics.
enum NumberOrText {
    Int(i64),
    Float(f64),
    Text(String),
}

impl<'de> Deserialize<'de> for NumberOrText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Any;
        impl serde::de::Visitor<'_> for Any {
            type Value = NumberOrText;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number or a string")
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(NumberOrText::Int(v))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(i64::try_from(v).map_or(NumberOrText::Float(v as f64), NumberOrText::Int))
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(NumberOrText::Float(v))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(NumberOrText::Text(v.to_owned()))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(NumberOrText::Text(v))
            }
        }
        d.deserialize_any(Any)
    }
}

pub fn i64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match NumberOrText::deserialize(d)? {
        NumberOrText::Int(v) => Ok(v),
        NumberOrText::Float(v) if v.fract() == 0.0 => Ok(v as i64),
        NumberOrText::Float(v) => Err(D::Error::custom(format!("{v} is not an integer"))),
        NumberOrText::Text(t) => t
            .trim()
            .parse()
            .map_err(|_| D::Error::custom(format!("{t:?} is not an integer"))),
    }
}

pub fn opt_i64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<NumberOrTextOrNull>::deserialize(d).and_then(|v| match v {
        None | Some(NumberOrTextOrNull::Null(())) => Ok(None),
        Some(NumberOrTextOrNull::Value(v)) => i64_lenient(v).map(Some).map_err(D::Error::custom),
    })
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrTextOrNull {
    Null(()),
    Value(Value),
}

pub fn f64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match NumberOrText::deserialize(d)? {
        NumberOrText::Int(v) => Ok(v as f64),
        NumberOrText::Float(v) => Ok(v),
        NumberOrText::Text(t) => match t.trim() {
            "NaN" | "nan" => Ok(f64::NAN),
            "Infinity" | "inf" => Ok(f64::INFINITY),
            "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
            other => other
                .parse()
                .map_err(|_| D::Error::custom(format!("{t:?} is not a number"))),
        },
    }
}

pub fn u32_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = i64_lenient(d)?;
    u32::try_from(v).map_err(|_| D::Error::custom(format!("{v} is out of range")))
}

/// A string or a list of strings: GET repeats a key, JSON sends an array.
pub fn strings_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Probe {
        #[serde(deserialize_with = "i64_lenient")]
        n: i64,
        #[serde(deserialize_with = "f64_lenient")]
        x: f64,
        #[serde(default, deserialize_with = "strings_lenient")]
        ids: Vec<String>,
    }

    #[test]
    fn numbers_arrive_as_numbers_or_strings() {
        let p: Probe = serde_json::from_str(r#"{"n": "5", "x": "NaN", "ids": "a"}"#).unwrap();
        assert_eq!(p.n, 5);
        assert!(p.x.is_nan());
        assert_eq!(p.ids, ["a"]);
        let p: Probe = serde_json::from_value(query_object("n=7&x=0.5&ids=a&ids=b")).unwrap();
        assert_eq!((p.n, p.x), (7, 0.5));
        assert_eq!(p.ids, ["a", "b"]);
        assert!(serde_json::from_str::<Probe>(r#"{"n": "five", "x": 1}"#).is_err());
    }
}
