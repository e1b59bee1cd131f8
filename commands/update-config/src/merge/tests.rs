//! The upstream vectors of protocol notes §5.5.

use super::*;

const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const PAST: &str = "2025-12-31T00:00:00Z";
const FUTURE: &str = "2026-01-02T00:00:00Z";

fn np(id: &str) -> Value {
    json!({"id": id, "name": id, "locked": true, "owner": "neopro", "videos": []})
}

fn cl(id: &str) -> Value {
    json!({"id": id, "name": id, "locked": false, "owner": "club", "videos": []})
}

fn with_videos(mut cat: Value, names: &[&str]) -> Value {
    cat["videos"] = Value::Array(names.iter().map(|n| json!({"name": n})).collect());
    cat
}

fn ids(cats: &[Value]) -> Vec<String> {
    cats.iter()
        .map(|c| c["id"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn locked_means_locked_or_neopro_owned() {
    assert!(is_locked(&json!({"locked": true})));
    assert!(is_locked(&json!({"owner": "neopro"})));
    assert!(!is_locked(&json!({"locked": false, "owner": "club"})));
    assert!(!is_locked(&json!({})));
    assert!(!is_locked(&Value::Null));
}

#[test]
fn clean_expired_videos_vectors() {
    let c1 = clean_expired_videos(
        &[json!({"id": "cat1", "videos": [
            {"name": "expired", "expires_at": PAST}, {"name": "valid", "expires_at": FUTURE}, {"name": "no-expiry"}
        ]})],
        NOW,
    );
    assert_eq!(
        c1[0]["videos"],
        json!([{"name": "valid", "expires_at": FUTURE}, {"name": "no-expiry"}])
    );
    let c2 = clean_expired_videos(
        &[
            json!({"id": "cat1", "videos": [], "subCategories": [{"id": "sub1", "videos": [
                {"name": "expired", "expires_at": PAST}, {"name": "valid", "expires_at": FUTURE}
            ]}]}),
        ],
        NOW,
    );
    assert_eq!(
        c2[0]["subCategories"][0]["videos"],
        json!([{"name": "valid", "expires_at": FUTURE}])
    );
    assert_eq!(
        clean_expired_videos(&[json!({"id": "cat1"})], NOW),
        vec![json!({"id": "cat1"})]
    );
    assert!(clean_expired_videos(&[], NOW).is_empty());
    let unparseable = json!({"id": "c", "videos": [{"name": "odd", "expires_at": "someday"}]});
    assert_eq!(
        clean_expired_videos(std::slice::from_ref(&unparseable), NOW),
        vec![unparseable]
    );
}

#[test]
fn merge_categories_vectors() {
    // M1
    let m1 = merge_categories(&[], &[with_videos(np("annonces_neopro"), &["promo"])]);
    assert_eq!(ids(&m1), ["annonces_neopro"]);
    assert_eq!(
        (m1[0]["locked"].clone(), m1[0]["owner"].clone()),
        (json!(true), json!("neopro"))
    );
    // M2
    let m2 = merge_categories(&[with_videos(cl("info_club"), &["match"])], &[]);
    assert_eq!(ids(&m2), ["info_club"]);
    assert_eq!(m2[0]["owner"], json!("club"));
    // M3
    let m3 = merge_categories(
        &[with_videos(np("annonces_neopro"), &["old_promo"])],
        &[with_videos(np("annonces_neopro"), &["new_promo"])],
    );
    assert_eq!(m3.len(), 1);
    assert_eq!(m3[0]["videos"][0]["name"], json!("new_promo"));
    // M4
    assert!(merge_categories(&[np("annonces_neopro")], &[]).is_empty());
    // M5
    let m5 = merge_categories(
        &[cl("info_club"), np("old_neopro")],
        &[np("annonces_neopro")],
    );
    assert_eq!(ids(&m5), ["annonces_neopro", "info_club"]);
    // M6
    let m6 = merge_categories(&[], &[cl("suggested_club")]);
    assert_eq!(
        (m6[0]["locked"].clone(), m6[0]["owner"].clone()),
        (json!(false), json!("club"))
    );
    // M7: local club category wins
    let m7 = merge_categories(
        &[with_videos(cl("info_club"), &["local_video"])],
        &[
            json!({"id": "info_club", "name": "Info Club Updated", "locked": false, "owner": "club", "videos": []}),
        ],
    );
    assert_eq!(m7.len(), 1);
    assert_eq!(m7[0]["videos"], json!([{"name": "local_video"}]));
    // E2
    let e2 = merge_categories(
        &[],
        &[json!({"id": "neopro_cat", "name": "NEOPRO", "videos": []})],
    );
    assert_eq!(
        (e2[0]["locked"].clone(), e2[0]["owner"].clone()),
        (json!(false), json!("club"))
    );
    // E3
    let local: Vec<Value> = (0..100).map(|i| cl(&format!("club_{i}"))).collect();
    let content: Vec<Value> = (0..50).map(|i| np(&format!("neopro_{i}"))).collect();
    assert_eq!(merge_categories(&local, &content).len(), 150);
    // E4
    let mut uni = cl("unicode");
    uni["name"] = json!("🏐 Volleyball é è à ü");
    assert_eq!(
        merge_categories(&[uni], &[])[0]["name"],
        json!("🏐 Volleyball é è à ü")
    );
}

#[test]
fn merge_configurations_vectors() {
    // MC1
    let local =
        json!({"version": "1.0", "auth": {"password": "test123"}, "categories": [cl("info_club")]});
    let merged = merge_configurations(
        Some(&local),
        &json!({"version": "2.0", "categories": [np("annonces_neopro")]}),
        NOW,
    );
    assert_eq!(merged["version"], json!("2.0"));
    assert_eq!(merged["auth"]["password"], json!("test123"));
    assert_eq!(merged["categories"].as_array().map(Vec::len), Some(2));
    assert_eq!(local["version"], json!("1.0"), "input untouched (MC5)");
    // MC2, MC3
    let mc2 = merge_configurations(
        Some(&json!({})),
        &json!({"version": "1.0", "categories": [np("a")]}),
        NOW,
    );
    assert_eq!(
        (
            mc2["version"].clone(),
            mc2["categories"].as_array().map(Vec::len)
        ),
        (json!("1.0"), Some(1))
    );
    let mc3 = merge_configurations(
        Some(&json!({"version": "1.0", "categories": [cl("info_club")]})),
        &json!({}),
        NOW,
    );
    assert_eq!(
        (
            mc3["version"].clone(),
            mc3["categories"].as_array().map(Vec::len)
        ),
        (json!("1.0"), Some(1))
    );
    // MC4 / S4
    let mc4 = merge_configurations(
        Some(
            &json!({"categories": [{"id": "info_club", "name": "x", "locked": false, "owner": "club",
            "videos": [{"name": "Expired", "expires_at": PAST}, {"name": "Valid", "expires_at": FUTURE}]}]}),
        ),
        &json!({"categories": []}),
        NOW,
    );
    assert_eq!(
        mc4["categories"][0]["videos"],
        json!([{"name": "Valid", "expires_at": FUTURE}])
    );
    // MC6..MC9
    let live = |local: Value, content: Value| {
        merge_configurations(Some(&local), &content, NOW)["liveScoreEnabled"].clone()
    };
    assert_eq!(
        live(
            json!({"version": "1.0", "liveScoreEnabled": false, "categories": []}),
            json!({"liveScoreEnabled": true})
        ),
        json!(true)
    );
    assert_eq!(
        live(
            json!({"liveScoreEnabled": true, "categories": []}),
            json!({"liveScoreEnabled": false})
        ),
        json!(false)
    );
    assert_eq!(
        live(
            json!({"liveScoreEnabled": true, "categories": []}),
            json!({"version": "2.0", "categories": []})
        ),
        json!(true)
    );
    assert_eq!(
        live(
            json!({"version": "1.0", "categories": []}),
            json!({"liveScoreEnabled": true})
        ),
        json!(true)
    );
    // S2
    let s2 = merge_configurations(
        Some(
            &json!({"version": "2.0", "categories": [with_videos(np("annonces_neopro"), &["a"]), with_videos(cl("matchs"), &["Match finale"])]}),
        ),
        &json!({"version": "2.1", "categories": [with_videos(np("annonces_neopro"), &["a", "b"])]}),
        NOW,
    );
    assert_eq!(s2["version"], json!("2.1"));
    assert_eq!(
        ids(s2["categories"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()),
        ["annonces_neopro", "matchs"]
    );
    assert_eq!(
        s2["categories"][0]["videos"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        s2["categories"][1]["videos"],
        json!([{"name": "Match finale"}])
    );
    // S3
    let s3 = merge_configurations(
        Some(&json!({"categories": [np("annonces_neopro"), np("promo_old"), cl("matchs")]})),
        &json!({"categories": [np("annonces_neopro")]}),
        NOW,
    );
    assert_eq!(
        ids(s3["categories"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()),
        ["annonces_neopro", "matchs"]
    );
}

#[test]
fn a_toggle_without_categories_keeps_the_neopro_categories() {
    // Upstream deleted every NEOPRO category here.
    let local =
        json!({"categories": [np("annonces_neopro"), cl("matchs")], "liveScoreEnabled": false});
    let merged = merge_configurations(Some(&local), &json!({"liveScoreEnabled": true}), NOW);
    assert_eq!(merged["liveScoreEnabled"], json!(true));
    assert_eq!(merged["categories"], local["categories"]);
}
