<?xml version="1.0" encoding="UTF-8"?>
<!--
  Canonical FHIR R4 to SIMP (NFZ's screening programmes system), SOAP 1.2.
  SIMP's interface is not public: this message is our own design
  (docs/mappings.md, "FHIR to SIMP"); swapping it for the official one means
  replacing this file only. One ScreeningVisit per Appointment and one
  ScreeningSlot per Slot of a screening specialty (7910 mammography,
  7912 cytology, see schemas/cer/rules.json).
  Parameters: $message_key (idempotency key, also the WS-Addressing MessageID).
-->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:f="http://hl7.org/fhir"
                xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing"
                xmlns:s="urn:cergw:simp:v1" exclude-result-prefixes="f">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>
  <xsl:param name="message_key" select="''"/>
  <xsl:variable name="RPWDL_PREFIX" select="'urn:oid:2.16.840.1.113883.3.4424.2.3.1.'"/>
  <xsl:variable name="OID_SPECIALTY" select="'urn:oid:2.16.840.1.113883.3.4424.11.2.4'"/>
  <xsl:variable name="OID_PESEL" select="'urn:oid:2.16.840.1.113883.3.4424.1.1.616'"/>
  <xsl:variable name="rpwdl-id" select="(//f:identifier[starts-with(f:system/@value, $RPWDL_PREFIX)])[1]"/>

  <xsl:template name="programme">
    <xsl:param name="code"/>
    <xsl:choose>
      <xsl:when test="$code = '7910'">mammography</xsl:when>
      <xsl:when test="$code = '7912'">cytology</xsl:when>
      <xsl:otherwise>other</xsl:otherwise>
    </xsl:choose>
  </xsl:template>

  <xsl:template match="/">
    <env:Envelope>
      <env:Header>
        <wsa:Action>urn:cergw:simp:v1:Screening</wsa:Action>
        <wsa:MessageID>urn:cergw:<xsl:value-of select="$message_key"/></wsa:MessageID>
      </env:Header>
      <env:Body>
        <s:ScreeningUpdate>
          <s:Provider><xsl:value-of select="substring(substring-after($rpwdl-id/f:system/@value, $RPWDL_PREFIX), 1, 12)"/></s:Provider>
          <xsl:for-each select="//f:Appointment">
            <xsl:variable name="code" select="string(f:specialty/f:coding[f:system/@value = $OID_SPECIALTY][1]/f:code/@value)"/>
            <s:ScreeningVisit>
              <s:Programme><xsl:call-template name="programme"><xsl:with-param name="code" select="$code"/></xsl:call-template></s:Programme>
              <s:Specialty><xsl:value-of select="$code"/></s:Specialty>
              <s:VisitId><xsl:value-of select="(f:identifier/f:value/@value)[1]"/></s:VisitId>
              <s:Status><xsl:value-of select="f:status/@value"/></s:Status>
              <xsl:if test="f:start/@value"><s:Start><xsl:value-of select="f:start/@value"/></s:Start></xsl:if>
              <xsl:if test="f:end/@value"><s:End><xsl:value-of select="f:end/@value"/></s:End></xsl:if>
              <xsl:for-each select="f:participant/f:actor/f:identifier[f:system/@value = $OID_PESEL][1]">
                <s:Pesel><xsl:value-of select="f:value/@value"/></s:Pesel>
              </xsl:for-each>
            </s:ScreeningVisit>
          </xsl:for-each>
          <xsl:for-each select="//f:Slot">
            <xsl:variable name="code" select="string(f:specialty/f:coding[f:system/@value = $OID_SPECIALTY][1]/f:code/@value)"/>
            <s:ScreeningSlot>
              <s:Programme><xsl:call-template name="programme"><xsl:with-param name="code" select="$code"/></xsl:call-template></s:Programme>
              <s:Specialty><xsl:value-of select="$code"/></s:Specialty>
              <s:SlotId><xsl:value-of select="(f:identifier/f:value/@value | f:id/@value)[1]"/></s:SlotId>
              <s:Status><xsl:value-of select="f:status/@value"/></s:Status>
              <s:Start><xsl:value-of select="f:start/@value"/></s:Start>
              <s:End><xsl:value-of select="f:end/@value"/></s:End>
            </s:ScreeningSlot>
          </xsl:for-each>
        </s:ScreeningUpdate>
      </env:Body>
    </env:Envelope>
  </xsl:template>
</xsl:stylesheet>
