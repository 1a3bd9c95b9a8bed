import Testing
import Codecs

// Replaced by real tests when the module lands.
@Test func CodecsModuleLinks() { _ = CodecsModule.self }
