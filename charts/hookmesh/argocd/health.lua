-- Argo CD health check for hookmesh.io/v1alpha1 Source, Endpoint and Subscription.
-- Reads the standard Ready condition written by hookmesh-operator:
--   Ready=True                                   -> Healthy
--   Ready=False                                  -> Degraded (with the condition's message)
--   Ready=True but Healthy=False (an Endpoint whose receiver fails: CircuitOpen, Failing,
--   Paused)                                      -> Degraded (with the Healthy message)
--   no status / no Ready / Ready=Unknown         -> Progressing
--   status or Ready older than metadata.generation -> Progressing (the operator has not seen
--                                                   the latest spec yet)
-- The same script serves all three kinds (argocd-cm keys
-- resource.customizations.health.hookmesh.io_Source, _Endpoint and _Subscription).
local hs = {}

local function progressing(msg)
  hs.status = "Progressing"
  hs.message = msg
  return hs
end

if obj.status == nil then
  return progressing("Waiting for hookmesh-operator to report status")
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end

if generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < generation then
  return progressing("Waiting for hookmesh-operator to observe generation " .. tostring(generation))
end

local ready = nil
local healthy = nil
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" then
      ready = condition
    elseif condition.type == "Healthy" then
      healthy = condition
    end
  end
end

if ready == nil then
  return progressing("Waiting for the Ready condition")
end

if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  return progressing("Waiting for hookmesh-operator to observe generation " .. tostring(generation))
end

local message = ready.message
if message == nil or message == "" then
  message = ready.reason
end

if ready.status == "True" and healthy ~= nil and healthy.status == "False" then
  hs.status = "Degraded"
  hs.message = (healthy.reason or "Unhealthy") .. ": " .. (healthy.message or "the receiver is failing")
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message or "Ready"
  return hs
end

if ready.status == "False" then
  hs.status = "Degraded"
  hs.message = message or "Not ready"
  return hs
end

return progressing(message or "Ready condition is Unknown")
