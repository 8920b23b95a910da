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

/// A token's column: the FNV-1a hash the deduper uses too (stable across processes, so
/// every instance puts a token in the same column), folded into [`DIMENSIONS`].
pub fn column32(token: &str) -> u32 {
    crate::dispatch::dedupe::features::hash32(token.as_bytes()) % DIMENSIONS as u32
}

/// The tokens' columns, sorted and unique: what an example is compared by (nearest
/// examples) and what the model counts (each token once per petition).
pub fn columns(tokens: &[String]) -> Vec<u32> {
    let mut cols: Vec<u32> = tokens.iter().map(|t| column32(t)).collect();
    cols.sort_unstable();
    cols.dedup();
    cols
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::dedupe::features::similarity;

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
        assert_eq!(column32("w:路灯"), column32("w:路灯"));
        assert!((column32("w:路灯") as usize) < DIMENSIONS);
        assert_eq!(similarity(&c, &c), 1.0);
        assert_eq!(similarity(&c, &[]), 0.0);
    }
}
