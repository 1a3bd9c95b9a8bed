import Basics
import FSTree
import Testing
import TestSupport
