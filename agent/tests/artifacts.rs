//! The artifact store's contract, the same suite on a local directory and on an S3 server.

mod support;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use readmit_agent::tracking::artifacts::{
    ArtifactError, ArtifactKey, ArtifactStore, S3Settings, Scope,
};

const RUN: &str = "0123456789abcdef0123456789abcdef";

fn key(path: &str) -> ArtifactKey {
    ArtifactKey::new(
        Scope::Run {
            experiment_id: 1,
            run_id: RUN.into(),
        },
        path,
    )
    .unwrap()
}

fn chunks(
    data: &[u8],
    size: usize,
) -> impl futures_util::Stream<Item = Result<Bytes, String>> + Send + use<> {
    let parts: Vec<Result<Bytes, String>> = data
        .chunks(size)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(parts)
}

async fn read_all(store: &ArtifactStore, k: &ArtifactKey) -> Vec<u8> {
    let (size, mut body) = store.get(k).await.unwrap();
    let mut out = Vec::with_capacity(size as usize);
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(out.len() as u64, size);
    out
}

async fn suite(store: ArtifactStore) {
    // 10 MiB plus a tail, in uneven chunks: several S3 parts and a short last one.
    let data: Vec<u8> = (0..10 * 1024 * 1024 + 4321)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let size = store
        .put(&key("model/model.onnx"), chunks(&data, 777_777))
        .await
        .unwrap();
    assert_eq!(size, data.len() as u64);
    assert!(
        read_all(&store, &key("model/model.onnx")).await == data,
        "byte-equal round trip"
    );

    store
        .put(&key("model/MLmodel"), chunks(b"flavors: {}\n", 4))
        .await
        .unwrap();
    store
        .put(&key("metrics.json"), chunks(b"{}", 1))
        .await
        .unwrap();
    let root = store.list(&key("")).await.unwrap();
    let names: Vec<(&str, bool)> = root.iter().map(|e| (e.path.as_str(), e.is_dir)).collect();
    assert_eq!(names, [("metrics.json", false), ("model", true)]);
    let model = store.list(&key("model")).await.unwrap();
    assert_eq!(
        model.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(),
        ["model/MLmodel", "model/model.onnx"]
    );
    assert_eq!(model[1].size, Some(data.len() as u64));

    // An upload that breaks off leaves nothing behind.
    let broken = stream::iter(vec![
        Ok(Bytes::from_static(b"partial")),
        Err("client went away".to_owned()),
    ]);
    let err = store.put(&key("broken.bin"), broken).await.unwrap_err();
    assert!(matches!(err, ArtifactError::Upload { .. }), "{err}");
    assert!(matches!(
        store.get(&key("broken.bin")).await,
        Err(ArtifactError::NotFound { .. })
    ));

    store.delete(&key("model")).await.unwrap();
    assert!(matches!(
        store.get(&key("model/MLmodel")).await,
        Err(ArtifactError::NotFound { .. })
    ));
    assert_eq!(store.list(&key("")).await.unwrap().len(), 1);
}

#[tokio::test]
async fn artifacts_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::open("", dir.path()).unwrap();
    suite(store).await;
    // Nothing was written outside the artifact root.
    let outside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, ["artifacts"]);
}

#[tokio::test]
async fn artifacts_on_s3() {
    let Some(server) = support::s3_server("readmit-test").await else {
        return;
    };
    let settings = S3Settings {
        endpoint: Some(server.endpoint.clone()),
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
    };
    let dir = tempfile::tempdir().unwrap();
    let store =
        ArtifactStore::open_with("s3://readmit-test/mlflow", dir.path(), &settings).unwrap();
    suite(store).await;
}

#[test]
fn a_bucket_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let err = ArtifactStore::open_with("s3://", dir.path(), &S3Settings::default()).unwrap_err();
    assert!(err.to_string().contains("no bucket"), "{err}");
}
