/// Nearest-key suggestions ("did you mean ...?").
public enum Suggest {
    public static func nearest(_ word: String, in candidates: [String]) -> String? {
        // An abbreviation ("prod" for "production") is the likeliest intent.
        if word.count >= 3, let p = candidates.first(where: { $0.hasPrefix(word) }) { return p }
        var best: (String, Int)?
        for c in candidates {
            let d = distance(word, c)
            if let b = best, b.1 <= d { continue }
            best = (c, d)
        }
        guard let (c, d) = best else { return nil }
        // Accept up to a third of the word changed, at least 2 edits.
        return d <= max(2, word.count / 3) ? c : nil
    }

    public static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a.utf8), b = Array(b.utf8)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var prev = Array(0...b.count)
        var cur = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            cur[0] = i
            for j in 1...b.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[b.count]
    }
}
