//! The local [`MediaStore`](opptak_server::store::MediaStore) through a real
//! server on 127.0.0.1 (its presigned URLs point at the server's own
//! storage routes): the same conformance suite the S3 store passes.

use opptak_server::store::{LocalStore, conformance};
use opptak_server::{Server, UserToken};

#[tokio::test(flavor = "multi_thread")]
async fn the_local_store_passes_the_media_store_conformance_suite() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = Server::builder()
        .data_dir(data_dir.path())
        .user(UserToken { name: "teacher".into(), token: "teacher-test-token".into() })
        .start()
        .await
        .unwrap();
    // A second handle on the same folder signs with the same key file, so
    // its URLs are the server's.
    let store = LocalStore::open(&data_dir.path().join("media")).unwrap();
    store.set_base_url(server.url());
    conformance::run_all(&store, "conformance").await;
    server.shutdown().await;
}
