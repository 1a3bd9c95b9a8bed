import Testing
import Boards

// Replaced by real tests when the module lands.
@Test func BoardsModuleLinks() { _ = BoardsModule.self }
