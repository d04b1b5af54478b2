-- The sandbox for our own specs is the one merchants get: dws.testing (lua/dws/testing.lua).
return require "dws.testing"
