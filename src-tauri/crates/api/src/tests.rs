//! The crate as a server and a client use it: every request decoded from
//! every format, the vendor's reference samples, hostile XML, a table of
//! bad requests with the exact keys each must report, and round trips of
//! every type through every format.

use std::collections::{BTreeMap, BTreeSet};

use time::macros::datetime;

use crate::*;

const REFERENCE_JSON: &str = include_str!("testdata/finish-reference.json");
const REFERENCE_XML: &str = include_str!("testdata/finish-reference.xml");

const JSON: BodyFormat = BodyFormat::Json;
const XML: BodyFormat = BodyFormat::Xml;
const FORM: BodyFormat = BodyFormat::Form;

fn xml_doc(root: &str, members: &str) -> String {
    format!(
        "<MediaRecorderController.{root} xmlns:i=\"{XSI_NAMESPACE}\" xmlns=\"{CONTRACT_NAMESPACE}\">{members}</MediaRecorderController.{root}>"
    )
}

fn keys(result: Result<impl std::fmt::Debug>) -> BTreeSet<String> {
    match result {
        Err(Error::Invalid(state)) => state.keys().map(str::to_owned).collect(),
        other => panic!("expected Error::Invalid, got {other:?}"),
    }
}

fn problems<R: Request + std::fmt::Debug>(format: BodyFormat, body: &str) -> ModelState {
    match R::decode(format, body.as_bytes()) {
        Err(Error::Invalid(state)) => state,
        other => panic!("expected Error::Invalid, got {other:?}"),
    }
}

fn md5(s: &str) -> ContentMd5 {
    s.parse().unwrap()
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn finish_request() -> FinishRequest {
    FinishRequest {
        recording_id: "r1".into(),
        upload_id: "u1".into(),
        object_key: "recordings/7/r1.wav".into(),
        recording_name: "Lecture 1".into(),
        recorder_type: "desktop-audio".into(),
        is_video_recording: false,
        used_in_file_uploader: true,
        parts: vec![
            FinishPart { part_number: 2, etag: "\"e2\"".into() },
            FinishPart { part_number: 1, etag: "e1".into() },
        ],
    }
}

// ---------------------------------------------------------------------------
// The vendor's reference samples.

#[test]
fn testdata_is_the_reference_page_verbatim() {
    // CI has shared/ beside the repository; a bare checkout may not.
    let page = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../../shared/spec/finish-endpoint-reference.txt");
    let Ok(page) = std::fs::read_to_string(page) else {
        return;
    };
    assert!(page.contains(REFERENCE_JSON.trim_end()));
    assert!(page.contains(REFERENCE_XML.trim_end()));
}

#[test]
fn reference_json_sample_parses_but_repeats_part_one() {
    let decoded = FinishRequest::decode_with_problems(JSON, REFERENCE_JSON.as_bytes()).unwrap();
    assert_eq!(decoded.request.recording_id, "sample string 1");
    assert_eq!(decoded.request.parts.len(), 2);
    let duplicate = ["Part number 1 appears more than once.".to_owned()];
    let expected: Vec<(&str, &[String])> = vec![("request.parts[1].partNumber", &duplicate)];
    assert_eq!(decoded.problems.iter().collect::<Vec<_>>(), expected);

    let err = FinishRequest::decode(JSON, REFERENCE_JSON.as_bytes()).unwrap_err();
    assert_eq!(err.status(), 400);
    assert_eq!(
        String::from_utf8(err.to_body().encode(ResponseFormat::Json)).unwrap(),
        r#"{"code":"invalid_request","message":"The request is invalid.","modelState":{"request.parts[1].partNumber":["Part number 1 appears more than once."]}}"#
    );
}

#[test]
fn reference_xml_sample_parses_to_the_same_request_and_problem() {
    let from_xml = FinishRequest::decode_with_problems(XML, REFERENCE_XML.as_bytes()).unwrap();
    let from_json = FinishRequest::decode_with_problems(JSON, REFERENCE_JSON.as_bytes()).unwrap();
    assert_eq!(from_xml.request, from_json.request);
    assert_eq!(from_xml.problems, from_json.problems);
    let err = FinishRequest::decode(XML, REFERENCE_XML.as_bytes()).unwrap_err();
    assert_eq!(
        String::from_utf8(err.to_body().encode(ResponseFormat::Xml)).unwrap(),
        "<Error><Code>invalid_request</Code><Message>The request is invalid.</Message><ModelState>\
         <Field name=\"request.parts[1].partNumber\"><Message>Part number 1 appears more than once.</Message></Field>\
         </ModelState></Error>"
    );
}

#[test]
fn reference_samples_become_valid_when_the_duplicate_is_fixed() {
    let json = REFERENCE_JSON.replacen("\"partNumber\": 1", "\"partNumber\": 2", 1);
    assert!(FinishRequest::decode(JSON, json.as_bytes()).is_ok());
    let xml = REFERENCE_XML.replacen("<partNumber>1</partNumber>", "<partNumber>2</partNumber>", 1);
    assert!(FinishRequest::decode(XML, xml.as_bytes()).is_ok());
}

// ---------------------------------------------------------------------------
// Every request from JSON, XML (shuffled) and both form styles.

fn same_from_every_format<R: Request + PartialEq + std::fmt::Debug>(
    expected: &R,
    bodies: &[(BodyFormat, &str)],
) {
    assert!(expected.validate().is_empty(), "{:?}", expected.validate());
    for (format, body) in bodies {
        let got = R::decode(*format, body.as_bytes()).unwrap_or_else(|e| panic!("{format:?} {body}: {e}"));
        assert_eq!(&got, expected, "{format:?}: {body}");
    }
}

#[test]
fn start_request_from_every_format() {
    let expected = StartRequest {
        recording_name: "Lecture 1: waves & <tides>".into(),
        recorder_type: "desktop-audio".into(),
        is_video_recording: false,
        used_in_file_uploader: true,
        content_type: ContentType::Flac,
        expected_size_bytes: Some(20_000_000),
    };
    let xml = xml_doc(
        "NativeUploadStartRequest",
        "<usedInFileUploader>true</usedInFileUploader><contentType>audio/flac</contentType>\
         <expectedSizeBytes>20000000</expectedSizeBytes><recordingName>Lecture 1: waves &amp; &lt;tides&gt;</recordingName>\
         <isVideoRecording>false</isVideoRecording><recorderType>desktop-audio</recorderType>",
    );
    same_from_every_format(
        &expected,
        &[
            (
                JSON,
                r#"{"recordingName":"Lecture 1: waves & <tides>","recorderType":"desktop-audio","isVideoRecording":false,
                    "usedInFileUploader":true,"contentType":"audio/flac","expectedSizeBytes":20000000}"#,
            ),
            (XML, &xml),
            (
                FORM,
                "recordingName=Lecture+1%3A+waves+%26+%3Ctides%3E&recorderType=desktop-audio&isVideoRecording=false\
                 &usedInFileUploader=true&contentType=audio%2Fflac&expectedSizeBytes=20000000",
            ),
        ],
    );

    let growing = StartRequest { expected_size_bytes: None, ..expected };
    let nil =
        xml.replace("<expectedSizeBytes>20000000</expectedSizeBytes>", "<expectedSizeBytes i:nil=\"true\"/>");
    same_from_every_format(
        &growing,
        &[
            (
                JSON,
                r#"{"recordingName":"Lecture 1: waves & <tides>","recorderType":"desktop-audio","isVideoRecording":false,
                    "usedInFileUploader":true,"contentType":"audio/flac","expectedSizeBytes":null}"#,
            ),
            (XML, &nil),
            (
                FORM,
                "recordingName=Lecture+1%3A+waves+%26+%3Ctides%3E&recorderType=desktop-audio&isVideoRecording=false\
                 &usedInFileUploader=true&contentType=audio%2Fflac&expectedSizeBytes=",
            ),
        ],
    );
}

#[test]
fn parts_request_from_every_format() {
    let a = "1B2M2Y8AsgTpgAmY7PhCfg==";
    let b = "CY9rzUYh03PK3k6DJie09g==";
    let expected = PartsRequest {
        recording_id: "r1".into(),
        upload_id: "u1".into(),
        part_numbers: vec![2, 3],
        content_md5: Some(vec![md5(a), md5(b)]),
    };
    let ints = format!("<int xmlns=\"{ARRAYS_NAMESPACE}\">2</int><int xmlns=\"{ARRAYS_NAMESPACE}\">3</int>");
    let strings = format!(
        "<string xmlns=\"{ARRAYS_NAMESPACE}\">{a}</string><string xmlns=\"{ARRAYS_NAMESPACE}\">{b}</string>"
    );
    let xml = xml_doc(
        "NativeUploadPartsRequest",
        &format!(
            "<uploadId>u1</uploadId><contentMd5>{strings}</contentMd5><partNumbers>{ints}</partNumbers><recordingId>r1</recordingId>"
        ),
    );
    let enc = |s: &str| s.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
    let (a, b) = (enc(a), enc(b));
    same_from_every_format(
        &expected,
        &[
            (
                JSON,
                r#"{"recordingId":"r1","uploadId":"u1","partNumbers":[2,3],"contentMd5":["1B2M2Y8AsgTpgAmY7PhCfg==","CY9rzUYh03PK3k6DJie09g=="]}"#,
            ),
            (XML, &xml),
            (
                FORM,
                &format!(
                    "recordingId=r1&uploadId=u1&partNumbers%5B%5D=2&partNumbers%5B%5D=3&contentMd5%5B%5D={a}&contentMd5%5B%5D={b}"
                ),
            ),
            (
                FORM,
                &format!(
                    "recordingId=r1&uploadId=u1&partNumbers[0]=2&partNumbers[1]=3&contentMd5[0]={a}&contentMd5[1]={b}"
                ),
            ),
            (
                FORM,
                &format!(
                    "recordingId=r1&uploadId=u1&partNumbers=2&partNumbers=3&contentMd5={a}&contentMd5={b}"
                ),
            ),
        ],
    );

    let unsigned = PartsRequest { content_md5: None, part_numbers: vec![7], ..expected };
    same_from_every_format(
        &unsigned,
        &[
            (JSON, r#"{"recordingId":"r1","uploadId":"u1","partNumbers":[7]}"#),
            (JSON, r#"{"recordingId":"r1","uploadId":"u1","partNumbers":[7],"contentMd5":null}"#),
            (
                XML,
                &xml_doc(
                    "NativeUploadPartsRequest",
                    &format!(
                        "<recordingId>r1</recordingId><partNumbers><int xmlns=\"{ARRAYS_NAMESPACE}\">7</int></partNumbers><uploadId>u1</uploadId><contentMd5 i:nil=\"true\"/>"
                    ),
                ),
            ),
            (FORM, "recordingId=r1&uploadId=u1&partNumbers=7"),
        ],
    );
}

#[test]
fn list_parts_and_abort_requests_from_every_format() {
    let list = ListPartsRequest { recording_id: "r1".into(), upload_id: "u1".into() };
    let abort = AbortRequest { recording_id: "r1".into(), upload_id: "u1".into() };
    let json = r#"{"uploadId":"u1","recordingId":"r1"}"#;
    let form = "uploadId=u1&recordingId=r1";
    let members = "<uploadId>u1</uploadId><recordingId>r1</recordingId>";
    same_from_every_format(
        &list,
        &[(JSON, json), (XML, &xml_doc("NativeUploadListPartsRequest", members)), (FORM, form)],
    );
    same_from_every_format(
        &abort,
        &[(JSON, json), (XML, &xml_doc("NativeUploadAbortRequest", members)), (FORM, form)],
    );
}

#[test]
fn finish_request_from_every_format() {
    let expected = finish_request();
    let json = r#"{"recordingId":"r1","uploadId":"u1","objectKey":"recordings/7/r1.wav","recordingName":"Lecture 1",
        "recorderType":"desktop-audio","isVideoRecording":false,"usedInFileUploader":true,
        "parts":[{"partNumber":2,"etag":"\"e2\""},{"etag":"e1","partNumber":1}]}"#;
    let xml = xml_doc(
        "NativeUploadFinishRequest",
        "<usedInFileUploader>true</usedInFileUploader>\n  <parts>\n    <MediaRecorderController.NativeUploadPart><partNumber>2</partNumber><etag>\"e2\"</etag></MediaRecorderController.NativeUploadPart>\n    <MediaRecorderController.NativeUploadPart><etag>e1</etag><partNumber>1</partNumber></MediaRecorderController.NativeUploadPart>\n  </parts>\n  <recordingName>Lecture 1</recordingName><objectKey>recordings/7/r1.wav</objectKey><uploadId>u1</uploadId>\
         <recorderType>desktop-audio</recorderType><isVideoRecording>false</isVideoRecording><recordingId>r1</recordingId>",
    );
    let common = "recordingId=r1&uploadId=u1&objectKey=recordings%2F7%2Fr1.wav&recordingName=Lecture+1\
                  &recorderType=desktop-audio&isVideoRecording=false&usedInFileUploader=true";
    let jquery = format!(
        "{common}&parts%5B0%5D%5BpartNumber%5D=2&parts%5B0%5D%5Betag%5D=%22e2%22&parts%5B1%5D%5BpartNumber%5D=1&parts%5B1%5D%5Betag%5D=e1"
    );
    let dotted = format!(
        "{common}&parts[0].partNumber=2&parts[0].etag=%22e2%22&parts[1].etag=e1&parts[1].partNumber=1"
    );
    same_from_every_format(&expected, &[(JSON, json), (XML, &xml), (FORM, &jquery), (FORM, &dotted)]);
}

#[test]
fn json_and_form_names_ignore_case_as_the_web_api_binds_them() {
    let expected = AbortRequest { recording_id: "r1".into(), upload_id: "u1".into() };
    same_from_every_format(
        &expected,
        &[(JSON, r#"{"RecordingId":"r1","UPLOADID":"u1"}"#), (FORM, "RecordingId=r1&UploadId=u1")],
    );
    // DataContract names are exact.
    let xml = xml_doc("NativeUploadAbortRequest", "<RecordingId>r1</RecordingId><uploadId>u1</uploadId>");
    assert_eq!(
        keys(AbortRequest::decode(XML, xml.as_bytes())),
        BTreeSet::from(["request.recordingId".to_owned()])
    );
}

#[test]
fn unknown_members_are_ignored_and_a_bom_is_tolerated() {
    let body = "\u{feff}{\"recordingId\":\"r1\",\"uploadId\":\"u1\",\"extra\":{\"deep\":[1,2]}}";
    assert!(AbortRequest::decode(JSON, body.as_bytes()).is_ok());
}

// ---------------------------------------------------------------------------
// Hostile and broken bodies.

fn body_problem<R: Request + std::fmt::Debug>(format: BodyFormat, body: &[u8]) -> String {
    match R::decode(format, body) {
        Err(Error::Invalid(state)) => {
            assert_eq!(state.keys().collect::<Vec<_>>(), ["request"], "{state:?}");
            state.get("request").unwrap().join(" ")
        }
        other => panic!("expected a body-level problem, got {other:?}"),
    }
}

#[test]
fn xml_dtd_and_entities_are_refused_without_expansion() {
    let members = "<recordingId>&e;</recordingId><uploadId>u1</uploadId>";
    let doc = xml_doc("NativeUploadAbortRequest", members);
    let laughs: String = (1..=9)
        .map(|i| {
            let inner = if i == 1 { "lol".to_owned() } else { format!("&lol{};", i - 1).repeat(10) };
            format!("<!ENTITY lol{i} \"{inner}\">")
        })
        .collect();
    let cases = [
        format!("<!DOCTYPE r SYSTEM \"http://example.invalid/r.dtd\">{doc}"),
        format!("<!DOCTYPE r [<!ENTITY e \"internal\">]>{doc}"),
        format!("<?xml version=\"1.0\"?>\n<!DOCTYPE r [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>{doc}"),
        format!("<!DOCTYPE r [<!ENTITY % p SYSTEM \"http://example.invalid/p.dtd\"> %p;]>{doc}"),
        format!("<!DOCTYPE lolz [{laughs}<!ENTITY e \"&lol9;\">]>{doc}"),
    ];
    for body in &cases {
        let started = std::time::Instant::now();
        let message = body_problem::<AbortRequest>(XML, body.as_bytes());
        assert!(message.contains("DOCTYPE"), "{message}");
        assert!(!message.contains("internal") && !message.contains("root:"), "{message}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
    // Without a DTD, an undeclared entity is refused too.
    let message = body_problem::<AbortRequest>(XML, doc.as_bytes());
    assert!(message.contains("&e;"), "{message}");
}

#[test]
fn invalid_utf8_is_reported_with_its_offset_in_every_format() {
    for format in [JSON, XML, FORM] {
        let message = body_problem::<AbortRequest>(format, b"{\"recordingId\":\"r\xff1\"}");
        assert!(message.contains("not valid UTF-8: the byte at offset 17"), "{format:?}: {message}");
    }
}

#[test]
fn malformed_bodies_say_what_and_where() {
    let message = body_problem::<AbortRequest>(JSON, b"{\n\"recordingId\": \"r1\",\n\"uploadId\" \"u1\"}");
    assert!(message.contains("not valid JSON") && message.contains("line 3 column"), "{message}");
    let message = body_problem::<AbortRequest>(XML, format!("<MediaRecorderController.NativeUploadAbortRequest xmlns=\"{CONTRACT_NAMESPACE}\">\n<recordingId>r1</uploadId>").as_bytes());
    assert!(message.contains("not well-formed XML") && message.contains("line 2"), "{message}");
    let message = body_problem::<AbortRequest>(FORM, b"recordingId=r1&uploadId=%zz");
    assert!(message.contains("percent-escape at byte 24"), "{message}");
    let message = body_problem::<AbortRequest>(JSON, b"  \n ");
    assert!(message.contains("empty"), "{message}");
}

#[test]
fn a_body_of_the_wrong_endpoint_is_refused_by_its_xml_root() {
    let start_body =
        xml_doc("NativeUploadAbortRequest", "<recordingId>r1</recordingId><uploadId>u1</uploadId>");
    let message = body_problem::<ListPartsRequest>(XML, start_body.as_bytes());
    assert!(
        message.contains("must be <MediaRecorderController.NativeUploadListPartsRequest>")
            && message.contains("got <MediaRecorderController.NativeUploadAbortRequest>"),
        "{message}"
    );
}

#[test]
fn oversized_bodies_are_413() {
    let body = vec![b' '; MAX_BODY_BYTES + 1];
    let err = FinishRequest::decode(JSON, &body).unwrap_err();
    assert!(matches!(err, Error::PayloadTooLarge { .. }));
    assert_eq!(err.status(), 413);
}

#[test]
fn unknown_content_types_are_415() {
    for header in [
        "text/plain",
        "application/octet-stream",
        "multipart/form-data",
        "",
        "application/xml; charset=latin1",
    ] {
        let err = BodyFormat::from_content_type(header).unwrap_err();
        assert_eq!(err.status(), 415, "{header}");
        assert_eq!(err.to_body().model_state, ModelState::new());
    }
}

// ---------------------------------------------------------------------------
// Bad requests and the keys they must report.

#[derive(Clone, Copy, Debug)]
enum Endpoint {
    Start,
    Parts,
    ListParts,
    Abort,
    Finish,
}

fn decode_keys(endpoint: Endpoint, format: BodyFormat, body: &str) -> BTreeSet<String> {
    let body = body.as_bytes();
    match endpoint {
        Endpoint::Start => keys(StartRequest::decode(format, body)),
        Endpoint::Parts => keys(PartsRequest::decode(format, body)),
        Endpoint::ListParts => keys(ListPartsRequest::decode(format, body)),
        Endpoint::Abort => keys(AbortRequest::decode(format, body)),
        Endpoint::Finish => keys(FinishRequest::decode(format, body)),
    }
}

const START: &str = r#""recorderType":"desktop-audio","isVideoRecording":false,"usedInFileUploader":false,"contentType":"audio/wav""#;
const SESSION: &str = r#""recordingId":"r1","uploadId":"u1""#;
const FINISH: &str = r#""recordingId":"r1","uploadId":"u1","objectKey":"k","recordingName":"n","recorderType":"t","isVideoRecording":true,"usedInFileUploader":false"#;
const PARTS_OK: &str = r#""parts":[{"partNumber":1,"etag":"e1"},{"partNumber":2,"etag":"e2"}]"#;

#[test]
fn bad_requests_report_exactly_their_keys() {
    use Endpoint::*;
    let long_name = "x".repeat(256);
    let many_numbers: Vec<String> = (1..=101).map(|n| n.to_string()).collect();
    let many_numbers = many_numbers.join(",");
    let start = |fields: &str| format!("{{{START},{fields}}}");
    let parts = |fields: &str| format!("{{{SESSION},{fields}}}");
    let finish = |fields: &str| format!("{{{FINISH},{fields}}}");
    let finish_xml = |parts: &str| {
        xml_doc(
            "NativeUploadFinishRequest",
            &format!(
                "<recordingId>r1</recordingId><uploadId>u1</uploadId><objectKey>k</objectKey><recordingName>n</recordingName>\
                 <recorderType>t</recorderType><isVideoRecording>true</isVideoRecording><usedInFileUploader>false</usedInFileUploader>{parts}"
            ),
        )
    };
    let start_xml = |members: &str| xml_doc("NativeUploadStartRequest", members);
    const START_FORM: &str = "recorderType=t&usedInFileUploader=false&contentType=audio%2Fwav";
    const FINISH_FORM: &str = "recordingId=r1&uploadId=u1&objectKey=k&recordingName=n&recorderType=t&isVideoRecording=true&usedInFileUploader=false";

    let cases: Vec<(Endpoint, BodyFormat, String, &[&str])> = vec![
        // start, JSON
        (Start, JSON, format!("{{{START}}}"), &["request.recordingName"]),
        (Start, JSON, start(r#""recordingName":"   ""#), &["request.recordingName"]),
        (Start, JSON, start(&format!("\"recordingName\":\"{long_name}\"")), &["request.recordingName"]),
        (Start, JSON, start(r#""recordingName":null"#), &["request.recordingName"]),
        (Start, JSON, start(r#""recordingName":5"#), &["request.recordingName"]),
        (Start, JSON, start(r#""recordingName":"a\nb""#), &["request.recordingName"]),
        (Start, JSON, start(r#""recordingName":"a","recordingName":"b""#), &["request.recordingName"]),
        (Start, JSON, r#"{"recordingName":"n","recorderType":"","isVideoRecording":false,"usedInFileUploader":false,"contentType":"audio/wav"}"#.into(), &["request.recorderType"]),
        (Start, JSON, r#"{"recordingName":"n","recorderType":"t","isVideoRecording":"true","usedInFileUploader":false,"contentType":"audio/wav"}"#.into(), &["request.isVideoRecording"]),
        (Start, JSON, r#"{"recordingName":"n","recorderType":"t","isVideoRecording":false,"contentType":"audio/wav"}"#.into(), &["request.usedInFileUploader"]),
        (Start, JSON, r#"{"recordingName":"n","recorderType":"t","isVideoRecording":false,"usedInFileUploader":false,"contentType":"audio/mp3"}"#.into(), &["request.contentType"]),
        (Start, JSON, r#"{"recordingName":"n","recorderType":"t","isVideoRecording":false,"usedInFileUploader":false,"contentType":null}"#.into(), &["request.contentType"]),
        (Start, JSON, start(r#""recordingName":"n","expectedSizeBytes":0"#), &["request.expectedSizeBytes"]),
        (Start, JSON, start(r#""recordingName":"n","expectedSizeBytes":-5"#), &["request.expectedSizeBytes"]),
        (Start, JSON, start(r#""recordingName":"n","expectedSizeBytes":1.5"#), &["request.expectedSizeBytes"]),
        (Start, JSON, start(r#""recordingName":"n","expectedSizeBytes":"100""#), &["request.expectedSizeBytes"]),
        (Start, JSON, start(&format!("\"recordingName\":\"n\",\"expectedSizeBytes\":{}", MAX_UPLOAD_BYTES + 1)), &["request.expectedSizeBytes"]),
        (Start, JSON, "[]".into(), &["request"]),
        (Start, JSON, "null".into(), &["request"]),
        (Start, JSON, "{\"recordingName\":".into(), &["request"]),
        (Start, JSON, "".into(), &["request"]),
        // start, XML and form
        (Start, XML, start_xml("<recordingName>n</recordingName><recorderType>t</recorderType><isVideoRecording>maybe</isVideoRecording><usedInFileUploader>false</usedInFileUploader><contentType>audio/wav</contentType>"), &["request.isVideoRecording"]),
        (Start, XML, start_xml("<recordingName>a</recordingName><recordingName>b</recordingName><recorderType>t</recorderType><isVideoRecording>true</isVideoRecording><usedInFileUploader>false</usedInFileUploader><contentType>audio/wav</contentType>"), &["request.recordingName"]),
        (Start, XML, start_xml("<recordingName>n</recordingName><recorderType>t</recorderType><isVideoRecording>1</isVideoRecording><usedInFileUploader>0</usedInFileUploader><contentType>audio/wav</contentType><expectedSizeBytes>lots</expectedSizeBytes>"), &["request.expectedSizeBytes"]),
        (Start, XML, xml_doc("NativeUploadFinishRequest", "<recordingName>n</recordingName>"), &["request"]),
        (Start, FORM, format!("recordingName=n&isVideoRecording=yes&{START_FORM}"), &["request.isVideoRecording"]),
        (Start, FORM, format!("recordingName=a&recordingName=b&isVideoRecording=true&{START_FORM}"), &["request.recordingName"]),
        (Start, FORM, format!("recordingName=&isVideoRecording=true&{START_FORM}"), &["request.recordingName"]),
        (Start, FORM, format!("recordingName=n&isVideoRecording=&{START_FORM}"), &["request.isVideoRecording"]),
        // parts
        (Parts, JSON, parts(r#""partNumbers":[]"#), &["request.partNumbers"]),
        (Parts, JSON, parts(&format!("\"partNumbers\":[{many_numbers}]")), &["request.partNumbers"]),
        (Parts, JSON, parts(r#""partNumbers":[0]"#), &["request.partNumbers[0]"]),
        (Parts, JSON, parts(r#""partNumbers":[2,3,2]"#), &["request.partNumbers[2]"]),
        (Parts, JSON, parts(r#""partNumbers":[10001]"#), &["request.partNumbers[0]"]),
        (Parts, JSON, parts(r#""partNumbers":[1,"2"]"#), &["request.partNumbers[1]"]),
        (Parts, JSON, parts(r#""partNumbers":[1,null]"#), &["request.partNumbers[1]"]),
        (Parts, JSON, parts(r#""partNumbers":2"#), &["request.partNumbers"]),
        (Parts, JSON, format!("{{{SESSION}}}"), &["request.partNumbers"]),
        (Parts, JSON, r#"{"recordingId":"","uploadId":"u1","partNumbers":[1]}"#.into(), &["request.recordingId"]),
        (Parts, JSON, r#"{"recordingId":"r1","partNumbers":[1]}"#.into(), &["request.uploadId"]),
        (Parts, JSON, parts(r#""partNumbers":[1],"contentMd5":["abc"]"#), &["request.contentMd5[0]"]),
        (Parts, JSON, parts(r#""partNumbers":[1,2],"contentMd5":["1B2M2Y8AsgTpgAmY7PhCfg=="]"#), &["request.contentMd5"]),
        (Parts, JSON, parts(r#""partNumbers":[1],"contentMd5":"1B2M2Y8AsgTpgAmY7PhCfg==""#), &["request.contentMd5"]),
        (Parts, XML, xml_doc("NativeUploadPartsRequest", &format!("<recordingId>r1</recordingId><uploadId>u1</uploadId><partNumbers><int xmlns=\"{ARRAYS_NAMESPACE}\">x</int></partNumbers>")), &["request.partNumbers[0]"]),
        (Parts, XML, xml_doc("NativeUploadPartsRequest", "<recordingId>r1</recordingId><uploadId>u1</uploadId><partNumbers><long>1</long></partNumbers>"), &["request.partNumbers[0]"]),
        (Parts, XML, xml_doc("NativeUploadPartsRequest", "<recordingId>r1</recordingId><uploadId>u1</uploadId><partNumbers>3</partNumbers>"), &["request.partNumbers"]),
        (Parts, FORM, "recordingId=r1&uploadId=u1&partNumbers=0&partNumbers=2".into(), &["request.partNumbers[0]"]),
        (Parts, FORM, "recordingId=r1&uploadId=u1&partNumbers[0]=1&partNumbers[1]=1".into(), &["request.partNumbers[1]"]),
        // listparts and abort
        (ListParts, JSON, "{}".into(), &["request.recordingId", "request.uploadId"]),
        (ListParts, JSON, r#"{"recordingId":7,"uploadId":"u1"}"#.into(), &["request.recordingId"]),
        (ListParts, JSON, r#"{"recordingId":["r1"],"uploadId":"u1"}"#.into(), &["request.recordingId"]),
        (Abort, JSON, r#"{"recordingId":"r1","uploadId":null}"#.into(), &["request.uploadId"]),
        (Abort, JSON, r#"{"recordingId":" ","uploadId":"u1"}"#.into(), &["request.recordingId"]),
        (Abort, XML, xml_doc("NativeUploadAbortRequest", "<recordingId>r1</recordingId><uploadId i:nil=\"true\"/>"), &["request.uploadId"]),
        (Abort, FORM, "recordingId=r1".into(), &["request.uploadId"]),
        // finish
        (Finish, JSON, finish(r#""parts":[]"#), &["request.parts"]),
        (Finish, JSON, format!("{{{FINISH}}}"), &["request.parts"]),
        (Finish, JSON, finish(r#""parts":null"#), &["request.parts"]),
        (Finish, JSON, finish(r#""parts":{"partNumber":1,"etag":"e1"}"#), &["request.parts"]),
        (Finish, JSON, finish(r#""parts":[{"partNumber":1,"etag":"e1"},{"partNumber":3,"etag":"e3"}]"#), &["request.parts"]),
        (Finish, JSON, finish(r#""parts":[{"partNumber":2,"etag":"e2"}]"#), &["request.parts"]),
        (Finish, JSON, finish(r#""parts":[{"partNumber":1,"etag":""}]"#), &["request.parts[0].etag"]),
        (Finish, JSON, finish(r#""parts":[{"partNumber":1,"etag":"\"\""}]"#), &["request.parts[0].etag"]),
        (Finish, JSON, finish(r#""parts":[{"partNumber":0,"etag":"e"}]"#), &["request.parts[0].partNumber"]),
        (Finish, JSON, finish(r#""parts":[{"partNumber":-1,"etag":"e"}]"#), &["request.parts[0].partNumber"]),
        (Finish, JSON, finish(r#""parts":[{"partNumber":"1"}]"#), &["request.parts[0].partNumber", "request.parts[0].etag"]),
        (Finish, JSON, finish(r#""parts":[5]"#), &["request.parts[0]"]),
        (Finish, JSON, finish(r#""parts":[null,{"partNumber":1,"etag":"e1"}]"#), &["request.parts[0]"]),
        (Finish, JSON, finish(r#""parts":[{"partNumber":1,"etag":"e1"},{"partNumber":2,"etag":"e2"},{"partNumber":2,"etag":"e3"}]"#), &["request.parts[2].partNumber"]),
        (Finish, JSON, r#"{"recordingId":"r1","uploadId":"u1","objectKey":"","recordingName":"n","recorderType":"t","isVideoRecording":true,"usedInFileUploader":false,"parts":[{"partNumber":1,"etag":"e1"}]}"#.into(), &["request.objectKey"]),
        (Finish, JSON, format!("{{\"recordingId\":\"r1\",\"uploadId\":\"u1\",\"objectKey\":\"k\",\"recordingName\":\"n\",\"recorderType\":\"t\",\"isVideoRecording\":\"yes\",\"usedInFileUploader\":false,{PARTS_OK}}}"), &["request.isVideoRecording"]),
        (Finish, XML, finish_xml("<parts><part><partNumber>1</partNumber><etag>e1</etag></part></parts>"), &["request.parts[0]"]),
        (Finish, XML, finish_xml("<parts i:nil=\"true\"/>"), &["request.parts"]),
        (Finish, XML, finish_xml("<parts/>"), &["request.parts"]),
        (Finish, XML, finish_xml("<parts><MediaRecorderController.NativeUploadPart><partNumber>1</partNumber></MediaRecorderController.NativeUploadPart></parts>"), &["request.parts[0].etag"]),
        (Finish, FORM, format!("{FINISH_FORM}&parts[0][partNumber]=1&parts[0][etag]="), &["request.parts[0].etag"]),
        (Finish, FORM, format!("{FINISH_FORM}&parts[1][partNumber]=1&parts[1][etag]=e1"), &["request"]),
        (Finish, FORM, format!("{FINISH_FORM}&parts[0].partNumber=one&parts[0].etag=e1"), &["request.parts[0].partNumber"]),
        (Finish, FORM, format!("{FINISH_FORM}&parts=1"), &["request.parts[0]"]),
    ];
    assert!(cases.len() >= 40);
    for (endpoint, format, body, expected) in &cases {
        let expected: BTreeSet<String> = expected.iter().map(|k| (*k).to_owned()).collect();
        assert_eq!(decode_keys(*endpoint, *format, body), expected, "{endpoint:?} {format:?}: {body}");
    }
}

#[test]
fn messages_say_what_to_fix() {
    let state = problems::<StartRequest>(JSON, &format!("{{{START},\"recordingName\":\" \"}}"));
    assert_eq!(
        state.get("request.recordingName").unwrap(),
        ["recordingName must be 1-255 characters after trimming; it is empty."]
    );
    let state = problems::<FinishRequest>(
        JSON,
        &format!(
            "{{{FINISH},\"parts\":[{{\"partNumber\":0,\"etag\":\"\"}},{{\"partNumber\":1,\"etag\":\"e\"}},{{\"partNumber\":4,\"etag\":\"e\"}}]}}"
        ),
    );
    assert_eq!(
        state.get("request.parts[0].partNumber").unwrap(),
        ["partNumber must be between 1 and 10000; got 0."]
    );
    assert_eq!(state.get("request.parts[0].etag").unwrap(), ["etag must not be empty."]);
    // An out-of-range number leaves N unclear, so no gap is claimed.
    assert!(state.get("request.parts").is_none());

    let state = problems::<FinishRequest>(
        JSON,
        &format!(
            "{{{FINISH},\"parts\":[{{\"partNumber\":1,\"etag\":\"e\"}},{{\"partNumber\":4,\"etag\":\"e\"}},{{\"partNumber\":2,\"etag\":\"e\"}}]}}"
        ),
    );
    assert_eq!(
        state.get("request.parts").unwrap(),
        ["Part numbers must run 1..N without gaps; part 3 is missing."]
    );
    let state = problems::<PartsRequest>(JSON, r#"{"recordingId":"r1","uploadId":"u1","partNumbers":["2"]}"#);
    assert_eq!(
        state.get("request.partNumbers[0]").unwrap(),
        ["partNumbers[0] must be a number (without quotes); got text \"2\"."]
    );
    let state = problems::<AbortRequest>(JSON, r#"{"recordingId":"r1"}"#);
    assert_eq!(state.get("request.uploadId").unwrap(), ["uploadId is required."]);
    let state = problems::<StartRequest>(
        JSON,
        &format!("{{{START},\"recordingName\":\"n\",\"expectedSizeBytes\":-5}}"),
    );
    assert_eq!(
        state.get("request.expectedSizeBytes").unwrap(),
        ["expectedSizeBytes must not be negative; got -5."]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let body = r#"{"recordingId":"r1","objectKey":"k","recordingName":"","recorderType":"t",
        "isVideoRecording":"true","usedInFileUploader":false,
        "parts":[{"partNumber":1,"etag":"e1"},{"partNumber":1,"etag":""},{"partNumber":4,"etag":"e4"}]}"#;
    let state = problems::<FinishRequest>(JSON, body);
    assert_eq!(
        state.keys().collect::<Vec<_>>(),
        [
            "request.uploadId",
            "request.isVideoRecording",
            "request.recordingName",
            "request.parts[1].partNumber",
            "request.parts[1].etag",
            "request.parts",
        ]
    );
    // The missing uploadId is reported once, as missing: its placeholder
    // is not also judged empty.
    assert_eq!(state.get("request.uploadId").unwrap(), ["uploadId is required."]);
    assert_eq!(
        state.get("request.parts").unwrap(),
        ["Part numbers must run 1..N without gaps; parts 2 and 3 are missing."]
    );
}

#[test]
fn an_unreadable_part_number_suppresses_only_the_rules_it_would_fool() {
    let body = format!(
        "{{{FINISH},\"parts\":[{{\"partNumber\":1,\"etag\":\"e1\"}},{{\"partNumber\":\"x\",\"etag\":\"e2\"}},{{\"partNumber\":3,\"etag\":\"\"}}]}}"
    );
    let state = problems::<FinishRequest>(JSON, &body);
    assert_eq!(state.keys().collect::<Vec<_>>(), ["request.parts[1].partNumber", "request.parts[2].etag"]);
}

#[test]
fn the_server_adds_its_own_problems_to_the_same_report() {
    let decoded = FinishRequest::decode_with_problems(JSON, REFERENCE_JSON.as_bytes()).unwrap();
    let mut decoded = decoded;
    decoded.problems.add(
        FieldPath::request().field("parts").index(0).field("etag"),
        "No part 1 with this ETag is in storage; upload part 1 again.",
    );
    let err = decoded.into_result().unwrap_err();
    let state = err.model_state().unwrap();
    assert_eq!(state.keys().collect::<Vec<_>>(), ["request.parts[1].partNumber", "request.parts[0].etag"]);
}

// ---------------------------------------------------------------------------
// Round trips of every type through every format.

/// serde names the JSON members and `wire_struct!` the XML and form ones:
/// they must be the same names, exactly, at every level.
fn assert_same_member_names(json: &serde_json::Value, node: &crate::tree::Node) {
    use crate::tree::Node;
    match (json, node) {
        (serde_json::Value::Object(members), Node::Struct(fields)) => {
            let json_names: BTreeSet<&str> = members.keys().map(String::as_str).collect();
            let node_names: BTreeSet<&str> = fields.iter().map(|(name, _)| *name).collect();
            assert_eq!(json_names, node_names);
            for (name, field) in fields {
                assert_same_member_names(&members[*name], field);
            }
        }
        (serde_json::Value::Array(items), Node::List(_, nodes)) => {
            assert_eq!(items.len(), nodes.len());
            for (item, node) in items.iter().zip(nodes) {
                assert_same_member_names(item, node);
            }
        }
        (serde_json::Value::Object(_), Node::Map(_))
        | (serde_json::Value::Null, Node::Null)
        | (_, Node::Text(_)) => {}
        (json, node) => panic!("JSON {json} does not match {node:?}"),
    }
}

fn round_trip_request<R: Request + PartialEq + std::fmt::Debug>(request: &R) {
    let mut json = serde_json::to_value(request).unwrap();
    // JSON leaves out an absent contentMd5 that XML writes as nil.
    if let (serde_json::Value::Object(members), crate::tree::Node::Struct(fields)) =
        (&mut json, request.to_node())
    {
        for (name, field) in fields {
            if field == crate::tree::Node::Null {
                members.entry(name).or_insert(serde_json::Value::Null);
            }
        }
    }
    assert_same_member_names(&json, &request.to_node());
    for format in [JSON, XML, FORM] {
        let body = request.encode(format);
        let back = R::decode_with_problems(format, &body)
            .unwrap_or_else(|e| panic!("{format:?} {}: {e}", String::from_utf8_lossy(&body)));
        assert_eq!(&back.request, request, "{format:?}: {}", String::from_utf8_lossy(&body));
    }
}

fn round_trip_response<T: Response + PartialEq + std::fmt::Debug>(response: &T) {
    assert_same_member_names(&serde_json::to_value(response).unwrap(), &response.to_node());
    for format in [ResponseFormat::Json, ResponseFormat::Xml] {
        let body = response.encode(format);
        let back = T::decode(format, &body)
            .unwrap_or_else(|e| panic!("{format:?} {}: {e}", String::from_utf8_lossy(&body)));
        assert_eq!(&back, response, "{format:?}: {}", String::from_utf8_lossy(&body));
    }
}

#[test]
fn every_request_round_trips_in_every_format() {
    let start = StartRequest {
        recording_name: "  Fysikk 2 – «bølger» & <lys> \"1\" 'a'  ".into(),
        recorder_type: "desktop-screen".into(),
        is_video_recording: true,
        used_in_file_uploader: false,
        content_type: ContentType::Webm,
        expected_size_bytes: Some(MAX_UPLOAD_BYTES),
    };
    round_trip_request(&start);
    round_trip_request(&StartRequest { expected_size_bytes: None, content_type: ContentType::Ogg, ..start });
    let parts = PartsRequest {
        recording_id: "r/1+2".into(),
        upload_id: "u=1&x".into(),
        part_numbers: vec![10_000, 1, 5],
        content_md5: Some(vec![
            md5("1B2M2Y8AsgTpgAmY7PhCfg=="),
            md5("CY9rzUYh03PK3k6DJie09g=="),
            md5("+/+/+/+/+/+/+/+/+/+/+w=="),
        ]),
    };
    round_trip_request(&parts);
    round_trip_request(&PartsRequest { content_md5: None, ..parts });
    round_trip_request(&ListPartsRequest { recording_id: "r1".into(), upload_id: "u1".into() });
    round_trip_request(&AbortRequest { recording_id: "r1".into(), upload_id: "u1".into() });
    round_trip_request(&finish_request());
}

#[test]
fn finish_request_json_has_the_reference_shape() {
    let json = String::from_utf8(finish_request().encode(JSON)).unwrap();
    assert_eq!(
        json,
        r#"{"recordingId":"r1","uploadId":"u1","objectKey":"recordings/7/r1.wav","recordingName":"Lecture 1","recorderType":"desktop-audio","isVideoRecording":false,"usedInFileUploader":true,"parts":[{"partNumber":2,"etag":"\"e2\""},{"partNumber":1,"etag":"e1"}]}"#
    );
}

#[test]
fn finish_request_xml_has_the_reference_shape() {
    let xml = String::from_utf8(
        FinishRequest::decode(
            JSON,
            REFERENCE_JSON.replacen("\"partNumber\": 1", "\"partNumber\": 2", 1).as_bytes(),
        )
        .unwrap()
        .encode(XML),
    )
    .unwrap();
    // The reference's XML sample, with the first part renumbered, without its line breaks.
    let reference = REFERENCE_XML
        .replacen("<partNumber>1</partNumber>", "<partNumber>2</partNumber>", 1)
        .replace('\n', "");
    assert_eq!(xml, reference);
}

fn recording() -> Recording {
    Recording {
        recording_id: "r1".into(),
        recording_name: "Lecture <1> & co".into(),
        status: RecordingStatus::Ready,
        content_type: ContentType::Mp4,
        is_video_recording: true,
        size_bytes: Some(123_456_789),
        duration_seconds: Some(3601.25),
        created_at: ts("2025-03-01T12:00:00Z"),
        ready_at: Some(ts("2025-03-01T12:05:30.5Z")),
        error: None,
        media_url: Some("https://media.example.invalid/r1.mp4?X-Amz-Signature=a&b=c".into()),
        sha256: Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into()),
    }
}

#[test]
fn every_response_round_trips_in_json_and_xml() {
    let expires = Timestamp::new(datetime!(2025-03-02 12:00 UTC)).unwrap();
    round_trip_response(&StartResponse {
        recording_id: "r1".into(),
        upload_id: "u1".into(),
        object_key: "recordings/7/r1.wav".into(),
        part_size_bytes: 8 * 1024 * 1024,
        max_parts: MAX_PARTS,
        expires_at: expires,
    });
    let headers = BTreeMap::from([
        ("Content-MD5".to_owned(), "1B2M2Y8AsgTpgAmY7PhCfg==".to_owned()),
        ("x-amz-meta-a".to_owned(), "<&>".to_owned()),
    ]);
    round_trip_response(&PartsResponse {
        parts: vec![
            PresignedPart {
                part_number: 2,
                url: "https://s3.example.invalid/b/k?partNumber=2&uploadId=u1".into(),
                method: "PUT".into(),
                headers,
                expires_at: expires,
            },
            PresignedPart {
                part_number: 3,
                url: "http://127.0.0.1:1/parts/3".into(),
                method: "PUT".into(),
                headers: BTreeMap::new(),
                expires_at: expires,
            },
        ],
    });
    round_trip_response(&PartsResponse { parts: vec![] });
    round_trip_response(&ListPartsResponse {
        parts: vec![
            StoredPart { part_number: 1, etag: "\"e1\"".into(), size_bytes: 8_388_608 },
            StoredPart { part_number: 2, etag: "e2".into(), size_bytes: 1 },
        ],
    });
    round_trip_response(&AbortResponse { recording_id: "r1".into(), upload_id: "u1".into() });
    round_trip_response(&FinishResponse {
        recording_id: "r1".into(),
        status: RecordingStatus::Processing,
        status_url: "RestApi/personal/mediarecorder/recordings/r1/v1".into(),
    });
    round_trip_response(&recording());
    let processing = Recording {
        status: RecordingStatus::Processing,
        size_bytes: None,
        duration_seconds: None,
        ready_at: None,
        media_url: None,
        sha256: None,
        ..recording()
    };
    let failed = Recording {
        status: RecordingStatus::Failed,
        error: Some("The file is not a WAV file: its header says RIFX.".into()),
        ..processing.clone()
    };
    round_trip_response(&processing);
    round_trip_response(&RecordingList(vec![recording(), processing, failed]));
    round_trip_response(&RecordingList::default());
}

#[test]
fn error_bodies_round_trip_in_json_and_xml() {
    let mut state = ModelState::new();
    state.add("request.parts[1].partNumber", "Part number 1 appears more than once.");
    state.add("request.uploadId", "uploadId must not be empty.");
    for body in
        [ErrorBody::invalid(state), ErrorBody::new(ErrorCode::NotFound, "Recording r9 was not found.")]
    {
        for format in [ResponseFormat::Json, ResponseFormat::Xml] {
            assert_eq!(ErrorBody::decode(format, &body.encode(format)).unwrap(), body);
        }
    }
}

#[test]
fn xml_responses_have_the_data_contract_shape() {
    let xml = String::from_utf8(
        PartsResponse {
            parts: vec![PresignedPart {
                part_number: 2,
                url: "https://s/k?a=1&b=2".into(),
                method: "PUT".into(),
                headers: BTreeMap::from([("Content-MD5".to_owned(), "abc=".to_owned())]),
                expires_at: ts("2025-03-02T12:00:00Z"),
            }],
        }
        .encode(ResponseFormat::Xml),
    )
    .unwrap();
    assert_eq!(
        xml,
        format!(
            "<MediaRecorderController.NativeUploadPartsResponse xmlns:i=\"{XSI_NAMESPACE}\" xmlns=\"{CONTRACT_NAMESPACE}\">\
             <parts><MediaRecorderController.NativeUploadPresignedPart>\
             <expiresAt>2025-03-02T12:00:00Z</expiresAt>\
             <headers><KeyValueOfstringstring xmlns=\"{ARRAYS_NAMESPACE}\"><Key>Content-MD5</Key><Value>abc=</Value></KeyValueOfstringstring></headers>\
             <method>PUT</method><partNumber>2</partNumber><url>https://s/k?a=1&amp;b=2</url>\
             </MediaRecorderController.NativeUploadPresignedPart></parts>\
             </MediaRecorderController.NativeUploadPartsResponse>"
        )
    );

    let list = String::from_utf8(
        RecordingList(vec![Recording { error: None, ..recording() }]).encode(ResponseFormat::Xml),
    )
    .unwrap();
    assert!(list.starts_with(&format!(
        "<ArrayOfMediaRecorderController.Recording xmlns:i=\"{XSI_NAMESPACE}\" xmlns=\"{CONTRACT_NAMESPACE}\"><MediaRecorderController.Recording><contentType>video/mp4</contentType>"
    )), "{list}");
    assert!(list.contains("<error i:nil=\"true\"/>"), "{list}");

    let json = String::from_utf8(RecordingList(vec![]).encode(ResponseFormat::Json)).unwrap();
    assert_eq!(json, "[]");
}

#[test]
fn json_responses_write_nulls_and_read_missing_optionals() {
    let json =
        String::from_utf8(Recording { media_url: None, ..recording() }.encode(ResponseFormat::Json)).unwrap();
    assert!(json.contains(r#""mediaUrl":null"#), "{json}");
    assert!(json.contains(r#""readyAt":"2025-03-01T12:05:30.5Z""#), "{json}");
    let minimal = r#"{"recordingId":"r1","recordingName":"n","status":"processing","contentType":"audio/wav",
        "isVideoRecording":false,"createdAt":"2025-03-01T12:00:00Z"}"#;
    let parsed = Recording::decode(ResponseFormat::Json, minimal.as_bytes()).unwrap();
    assert_eq!(parsed.size_bytes, None);
    assert_eq!(parsed.status, RecordingStatus::Processing);
}

#[test]
fn malformed_responses_are_reported() {
    let err = FinishResponse::decode(ResponseFormat::Json, b"{\"recordingId\":1}").unwrap_err();
    assert!(matches!(err, Error::MalformedResponse(_)));
    let xml = xml_doc("NativeUploadFinishResponse", "<recordingId>r1</recordingId><status>lost</status>");
    let err = FinishResponse::decode(ResponseFormat::Xml, xml.as_bytes()).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("response.status: status must be processing, ready or failed; got \"lost\"."),
        "{message}"
    );
    assert!(message.contains("response.statusUrl: statusUrl is required."), "{message}");
}
