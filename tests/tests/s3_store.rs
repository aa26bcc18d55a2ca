//! The S3 [`MediaStore`](opptak_server::store::MediaStore) against a real
//! S3-compatible store (a private SeaweedFS): the shared conformance suite,
//! and `connect`'s promise to fail fast, saying what to fix.

use std::process::Command;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::config::{Credentials, Region, SharedCredentialsProvider};
use opptak_server::store::{MediaStore, S3Config, S3Store, StoreError, conformance};
use opptak_tests::{SeaweedFs, free_port};

/// Set only in the child process of [`connect_reads_credentials_from_the_standard_chain`].
const CHILD_ENDPOINT: &str = "OPPTAK_TEST_S3_CHILD_ENDPOINT";
const CHILD_BUCKET: &str = "opptak-env-chain";

fn config(endpoint: &str, bucket: &str) -> S3Config {
    S3Config {
        endpoint: Some(endpoint.to_owned()),
        bucket: bucket.to_owned(),
        region: "us-east-1".to_owned(),
        path_style: true,
    }
}

/// SeaweedFS's keys, given explicitly: this process's environment stays as
/// it is (changing it is unsafe with threads running), and the AWS chain
/// could otherwise ask the instance-metadata address for credentials.
fn explicit_credentials() -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AK",
            "SK",
            None,
            None,
            "opptak-tests",
        )))
        .build()
}

#[tokio::test]
async fn seaweedfs_passes_the_media_store_conformance_suite() -> anyhow::Result<()> {
    let Some(seaweed) = SeaweedFs::start()? else { return Ok(()) };
    seaweed.create_bucket("opptak-media")?;
    let store =
        S3Store::connect_with(config(&seaweed.endpoint(), "opptak-media"), &explicit_credentials()).await?;
    let started = Instant::now();
    conformance::run_all(&store, "conformance").await;
    eprintln!("conformance suite passed in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

#[tokio::test]
async fn connect_to_an_unreachable_endpoint_fails_fast_naming_it() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let result = S3Store::connect_with(config(&endpoint, "media"), &explicit_credentials()).await;
    let elapsed = started.elapsed();
    let Err(StoreError::Unavailable(message)) = result else {
        panic!("expected Unavailable, got {result:?}");
    };
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert!(message.contains(&endpoint), "the message names the endpoint: {message}");
    assert!(message.contains("--s3-endpoint"), "the message says what to check: {message}");
}

#[tokio::test]
async fn connect_to_a_missing_bucket_says_so() -> anyhow::Result<()> {
    let Some(seaweed) = SeaweedFs::start()? else { return Ok(()) };
    let result =
        S3Store::connect_with(config(&seaweed.endpoint(), "no-such-bucket"), &explicit_credentials()).await;
    let Err(StoreError::Unavailable(message)) = result else {
        panic!("expected Unavailable, got {result:?}");
    };
    assert!(message.contains("'no-such-bucket' does not exist"), "{message}");
    assert!(message.contains(&seaweed.endpoint()), "{message}");
    Ok(())
}

/// `S3Store::connect` takes its keys from the AWS chain, which reads the
/// process environment: so this runs the check below in a child process
/// with SeaweedFS's `env()`.
#[tokio::test]
async fn connect_reads_credentials_from_the_standard_chain() -> anyhow::Result<()> {
    let Some(seaweed) = SeaweedFs::start()? else { return Ok(()) };
    seaweed.create_bucket(CHILD_BUCKET)?;
    let output = Command::new(std::env::current_exe()?)
        .args(["--exact", "child_connects_with_environment_credentials", "--ignored", "--nocapture"])
        .envs(seaweed.env())
        .env(CHILD_ENDPOINT, seaweed.endpoint())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the child ran no test:\n{stdout}\n{stderr}");
    Ok(())
}

#[tokio::test]
#[ignore = "run by connect_reads_credentials_from_the_standard_chain, in a child process with AWS_* set"]
async fn child_connects_with_environment_credentials() {
    let Ok(endpoint) = std::env::var(CHILD_ENDPOINT) else {
        eprintln!(
            "{CHILD_ENDPOINT} is not set: nothing to do outside connect_reads_credentials_from_the_standard_chain"
        );
        return;
    };
    let store = S3Store::connect(config(&endpoint, CHILD_BUCKET)).await.expect("connect with the AWS chain");
    let missing = store.head_object("nothing-here").await;
    assert!(matches!(missing, Err(StoreError::NoSuchObject)), "a signed HEAD of a missing key: {missing:?}");
}

/// SeaweedFS keeps every upload of a part number until completion and lists
/// each, in random order, with whole-second LastModified; its paging marker
/// then skips the rest of a page's last number. The store must still list
/// one part per number, the newest, across pages.
#[tokio::test]
async fn re_uploaded_parts_are_listed_once_across_pages() -> anyhow::Result<()> {
    let Some(seaweed) = SeaweedFs::start()? else { return Ok(()) };
    seaweed.create_bucket("opptak-paging")?;
    let store = S3Store::connect_with(config(&seaweed.endpoint(), "opptak-paging"), &explicit_credentials())
        .await?
        .with_list_page_size(3);
    let key = "paging/reuploads.wav";
    let upload = store.create_upload(key, "audio/wav", conformance::PART_SIZE).await?;
    let client = reqwest::Client::new();
    let mut newest = Vec::new();
    for round in 0..2u8 {
        if round > 0 {
            // LastModified has whole seconds: only a later second makes "newest" knowable.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        newest.clear();
        for number in 1..=4u32 {
            let body = vec![round * 16 + number as u8; 1000];
            let presigned = store.presign_part(key, &upload, number, None, Duration::from_secs(60)).await?;
            let response = client.put(&presigned.url).body(body).send().await?.error_for_status()?;
            let etag = response.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or_default();
            newest.push((number, etag.trim_matches('"').to_owned()));
        }
    }
    let listed = store.list_parts(key, &upload).await?;
    let listed: Vec<(u32, String)> = listed.into_iter().map(|part| (part.part_number, part.etag)).collect();
    assert_eq!(listed, newest, "one part per number, the newest upload of each");
    store.abort_upload(key, &upload).await?;
    Ok(())
}
