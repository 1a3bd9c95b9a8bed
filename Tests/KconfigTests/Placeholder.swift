import Testing
import Kconfig

// Replaced by real tests when the module lands.
@Test func KconfigModuleLinks() { _ = KconfigModule.self }
