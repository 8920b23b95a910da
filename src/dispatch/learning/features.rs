//! What the learned router reads of a petition: its words (jieba's segmentation), the
//! character bigrams of its text (words the dictionary does not know: 刺鼻, 黑水), the
//! channel's label, all hashed into a fixed number of columns so that the model's size
//! does not grow with the vocabulary.

use std::sync::OnceLock;

/// Columns of the hashed feature vector.
pub const DIMENSIONS: usize = 1 << 14;

fn segmenter() -> &'static jieba_rs::Jieba {
    static JIEBA: OnceLock<jieba_rs::Jieba> = OnceLock::new();
    JIEBA.get_or_init(jieba_rs::Jieba::new)
}

fn is_han(c: char) -> bool {
    ('\u{4e00}'..='\u{9fff}').contains(&c)
}

/// The tokens of a petition, in order, repeats kept: `w:` words of two or more Han
/// characters, `b:` Han bigrams, `l:` the channel's label.
pub fn tokens(text: &str, label: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    // Without the HMM: only dictionary words, so the same text always cuts the same way.
    for token in segmenter().cut(text, false) {
        if token.word.chars().count() >= 2 && token.word.chars().all(is_han) {
            out.push(format!("w:{}", token.word));
        }
    }
    let chars: Vec<char> = text.chars().collect();
    for pair in chars.windows(2) {
        if is_han(pair[0]) && is_han(pair[1]) {
            out.push(format!("b:{}{}", pair[0], pair[1]));
        }
    }
    if let Some(label) = label.filter(|l| !l.trim().is_empty()) {
        out.push(format!("l:{}", label.trim()));
    }
    out
}

/// FNV-1a, stable across processes: every instance hashes a token to the same column.
pub fn column(token: &str) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for b in token.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h as usize % DIMENSIONS
}

/// A token's column as stored (`u32`).
pub fn column32(token: &str) -> u32 {
    u32::try_from(column(token)).unwrap_or(u32::MAX)
}

/// The tokens' columns, sorted and unique: what an example is compared by (nearest
/// examples) and what the model counts (each token once per petition).
pub fn columns(tokens: &[String]) -> Vec<u32> {
    let mut cols: Vec<u32> = tokens.iter().map(|t| column32(t)).collect();
    cols.sort_unstable();
    cols.dedup();
    cols
}

/// Jaccard index of two sorted, unique column lists.
pub fn overlap(a: &[u32], b: &[u32]) -> f64 {
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - inter;
    if union == 0 {
        0.0
    } else {
        inter as f64 / union as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_bigrams_and_the_label_are_read() {
        let t = tokens("小区门口的路灯坏了", Some("城市管理/路灯"));
        assert!(t.contains(&"w:路灯".to_string()), "{t:?}");
        assert!(t.contains(&"b:门口".to_string()), "{t:?}");
        assert!(t.contains(&"l:城市管理/路灯".to_string()), "{t:?}");
        // Punctuation and digits are no tokens.
        assert!(t.iter().all(|x| !x.contains('，')));
        assert_eq!(
            tokens("小区门口的路灯坏了", None),
            tokens("小区门口的路灯坏了", None)
        );
    }

    #[test]
    fn columns_are_stable_sorted_and_unique() {
        let c = columns(&tokens("路灯坏了路灯坏了", None));
        assert!(c.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(column("w:路灯"), column("w:路灯"));
        assert!(column("w:路灯") < DIMENSIONS);
        assert_eq!(overlap(&c, &c), 1.0);
        assert_eq!(overlap(&c, &[]), 0.0);
    }
}
