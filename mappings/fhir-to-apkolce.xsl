<?xml version="1.0" encoding="UTF-8"?>
<!--
  Canonical FHIR R4 to the AP-KOLCE waiting-list message (NFZ Kolejki
  Centralne). The official XML schema is not public: this message is our own
  design (docs/mappings.md, "FHIR to AP-KOLCE"). Cardiology (poradnie
  1100-1105) is service 60004. Appointments become entries (Wpis) with the
  medical category (pilny/stabilny); free Slots become free dates (WolnyTermin),
  which is what the daily "pierwszy wolny termin" report is built from.
  Parameters: $message_key (idempotency key).
-->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:f="http://hl7.org/fhir"
                xmlns:k="urn:cergw:apkolce:v1" exclude-result-prefixes="f">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>
  <xsl:param name="message_key" select="''"/>
  <!-- the RPWDL of the clinic acting (the certificate's): the Swiadczeniodawca, whatever the payload names -->
  <xsl:param name="acting_clinic" select="''"/>
  <xsl:variable name="RPWDL_PREFIX" select="'urn:oid:2.16.840.1.113883.3.4424.2.3.1.'"/>
  <xsl:variable name="OID_SPECIALTY" select="'urn:oid:2.16.840.1.113883.3.4424.11.2.4'"/>
  <xsl:variable name="OID_PESEL" select="'urn:oid:2.16.840.1.113883.3.4424.1.1.616'"/>
  <xsl:variable name="URGENCY" select="'http://cergw.pl/fhir/StructureDefinition/urgency'"/>
  <xsl:variable name="rpwdl-id" select="(//f:identifier[starts-with(f:system/@value, $RPWDL_PREFIX)])[1]"/>

  <xsl:template name="service">
    <xsl:param name="code"/>
    <xsl:choose>
      <xsl:when test="$code &gt;= 1100 and $code &lt;= 1105">60004</xsl:when>
      <xsl:otherwise><xsl:value-of select="$code"/></xsl:otherwise>
    </xsl:choose>
  </xsl:template>

  <xsl:template match="/">
    <k:KomunikatKolejki wersja="1">
      <k:Naglowek>
        <k:IdKomunikatu><xsl:value-of select="$message_key"/></k:IdKomunikatu>
        <k:Swiadczeniodawca>
          <xsl:choose>
            <xsl:when test="$acting_clinic != ''"><xsl:value-of select="$acting_clinic"/></xsl:when>
            <xsl:otherwise><xsl:value-of select="substring(substring-after($rpwdl-id/f:system/@value, $RPWDL_PREFIX), 1, 12)"/></xsl:otherwise>
          </xsl:choose>
        </k:Swiadczeniodawca>
      </k:Naglowek>
      <xsl:for-each select="//f:Appointment">
        <xsl:variable name="code" select="string(f:specialty/f:coding[f:system/@value = $OID_SPECIALTY][1]/f:code/@value)"/>
        <k:Wpis>
          <k:IdWpisu><xsl:value-of select="(f:identifier/f:value/@value)[1]"/></k:IdWpisu>
          <k:KodSwiadczenia><xsl:call-template name="service"><xsl:with-param name="code" select="$code"/></xsl:call-template></k:KodSwiadczenia>
          <k:KodKomorki><xsl:value-of select="$code"/></k:KodKomorki>
          <k:Status><xsl:value-of select="f:status/@value"/></k:Status>
          <xsl:if test="f:extension[@url = $URGENCY]">
            <k:Kategoria><xsl:value-of select="f:extension[@url = $URGENCY]/f:valueCode/@value"/></k:Kategoria>
          </xsl:if>
          <xsl:if test="f:start/@value"><k:Termin><xsl:value-of select="f:start/@value"/></k:Termin></xsl:if>
          <xsl:for-each select="f:participant/f:actor/f:identifier[f:system/@value = $OID_PESEL][1]">
            <k:Pesel><xsl:value-of select="f:value/@value"/></k:Pesel>
          </xsl:for-each>
        </k:Wpis>
      </xsl:for-each>
      <xsl:for-each select="//f:Slot[f:status/@value = 'free']">
        <xsl:variable name="code" select="string(f:specialty/f:coding[f:system/@value = $OID_SPECIALTY][1]/f:code/@value)"/>
        <k:WolnyTermin>
          <k:KodSwiadczenia><xsl:call-template name="service"><xsl:with-param name="code" select="$code"/></xsl:call-template></k:KodSwiadczenia>
          <k:KodKomorki><xsl:value-of select="$code"/></k:KodKomorki>
          <k:Od><xsl:value-of select="f:start/@value"/></k:Od>
          <k:Do><xsl:value-of select="f:end/@value"/></k:Do>
        </k:WolnyTermin>
      </xsl:for-each>
    </k:KomunikatKolejki>
  </xsl:template>
</xsl:stylesheet>
