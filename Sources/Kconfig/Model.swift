/// The Kconfig data model: symbols, properties, expressions and the menu tree, laid out
/// the way the kernel's own tool resolves them (so that evaluation can follow its rules
/// step by step). Symbols are addressed by integer id; expressions hold ids, not references.

public enum Tristate: UInt8, Sendable, Comparable {
    case no = 0, mod = 1, yes = 2
    public static func < (a: Tristate, b: Tristate) -> Bool { a.rawValue < b.rawValue }
    @inline(__always) static func and(_ a: Tristate, _ b: Tristate) -> Tristate { a < b ? a : b }
    @inline(__always) static func or(_ a: Tristate, _ b: Tristate) -> Tristate { a < b ? b : a }
    @inline(__always) var not: Tristate { Tristate(rawValue: 2 - rawValue) ?? .no }
    public var letter: String { self == .no ? "n" : self == .mod ? "m" : "y" }
}

public enum SymbolType: UInt8, Sendable {
    case unknown, bool, tristate, int, hex, string
    public var name: String {
        switch self {
        case .unknown: "unknown"
        case .bool: "bool"
        case .tristate: "tristate"
        case .int: "int"
        case .hex: "hex"
        case .string: "string"
        }
    }
}

public typealias SymID = Int32

public enum CompareOp: UInt8, Sendable {
    case equal, unequal, less, lessEqual, greater, greaterEqual
    var text: String {
        switch self {
        case .equal: "="
        case .unequal: "!="
        case .less: "<"
        case .lessEqual: "<="
        case .greater: ">"
        case .greaterEqual: ">="
        }
    }
}

public indirect enum Expr: Sendable {
    case symbol(SymID)
    case not(Expr)
    case and(Expr, Expr)
    case or(Expr, Expr)
    case compare(CompareOp, SymID, SymID)

    static func both(_ a: Expr?, _ b: Expr?) -> Expr? {
        guard let a else { return b }
        guard let b else { return a }
        return .and(a, b)
    }
    static func either(_ a: Expr?, _ b: Expr?) -> Expr? {
        guard let a else { return b }
        guard let b else { return a }
        return .or(a, b)
    }

    /// Every symbol id mentioned, in order of appearance (duplicates removed).
    func symbols(into out: inout [SymID]) {
        switch self {
        case .symbol(let s): if !out.contains(s) { out.append(s) }
        case .not(let e): e.symbols(into: &out)
        case .and(let a, let b), .or(let a, let b):
            a.symbols(into: &out)
            b.symbols(into: &out)
        case .compare(_, let a, let b):
            if !out.contains(a) { out.append(a) }
            if !out.contains(b) { out.append(b) }
        }
    }
}

enum PropKind: UInt8 {
    case prompt, menu, comment, defaultValue, select, imply, range
}

/// A property of a symbol or menu entry (prompt, default, select, imply, range), with the
/// condition under which it applies (`visible`, after dependency propagation).
final class Property {
    let kind: PropKind
    /// default value expression (for choice defaults: `.symbol(target)`)
    var expr: Expr?
    /// select/imply target, or range bounds
    var target: SymID = -1
    var rangeHigh: SymID = -1
    var visible: Expr?
    var visibleTri: Tristate = .no
    unowned(unsafe) let menu: MenuNode
    let file: Int32
    let line: Int32
    var text: String = ""

    init(kind: PropKind, menu: MenuNode, file: Int32, line: Int32) {
        self.kind = kind
        self.menu = menu
        self.file = file
        self.line = line
    }
}

struct SymFlags: OptionSet {
    let rawValue: UInt32
    static let const_ = SymFlags(rawValue: 1 << 0)
    static let choice = SymFlags(rawValue: 1 << 1)
    static let choiceValue = SymFlags(rawValue: 1 << 2)
    static let optional = SymFlags(rawValue: 1 << 3)
    static let write = SymFlags(rawValue: 1 << 4)
    static let valid = SymFlags(rawValue: 1 << 5)
    static let defUser = SymFlags(rawValue: 1 << 6)
    static let noWrite = SymFlags(rawValue: 1 << 7)
    static let written = SymFlags(rawValue: 1 << 8)
    static let defined = SymFlags(rawValue: 1 << 9)
    static let check = SymFlags(rawValue: 1 << 10)
    static let checked = SymFlags(rawValue: 1 << 11)
}

/// One symbol. Besides declared data it carries the evaluation state the kernel's
/// algorithm keeps per symbol (current value, visibility, cached dependency values).
final class Symbol {
    let id: SymID
    let name: String
    var type: SymbolType = .unknown
    var flags: SymFlags = []
    var props: [Property] = []
    var menus: [MenuNode] = []
    var dirDep: Expr?
    var revDep: Expr?
    var implied: Expr?
    /// for a choice value: its choice symbol; for a choice: its values, in order
    var choice: SymID = -1
    var choiceValues: [SymID] = []

    // evaluation state
    var curTri: Tristate = .no
    var curVal: String
    var curChoice: SymID = -1
    var visible: Tristate = .no
    var dirDepTri: Tristate = .yes
    var revDepTri: Tristate = .no
    var impliedTri: Tristate = .no
    var userTri: Tristate = .no
    var userVal: String?
    var userChoice: SymID = -1

    init(id: SymID, name: String) {
        self.id = id
        self.name = name
        curVal = name
    }

    var isChoice: Bool { flags.contains(.choice) }
    var isChoiceValue: Bool { flags.contains(.choiceValue) }
    var hasUserValue: Bool { flags.contains(.defUser) }
}

/// A node of the menu tree: a symbol entry, a choice, a menu, a comment, an `if` block.
final class MenuNode {
    var sym: SymID = -1
    var prompt: Property?
    var dep: Expr?
    /// `dep` as parsed (before finalisation added the parents' conditions)
    var rawDep: Expr?
    var visibility: Expr?
    unowned(unsafe) var parent: MenuNode?
    var next: MenuNode?
    var list: MenuNode?
    /// last child appended while parsing
    unowned(unsafe) var tail: MenuNode?
    let file: Int32
    let line: Int32
    init(file: Int32, line: Int32) {
        self.file = file
        self.line = line
    }
}
